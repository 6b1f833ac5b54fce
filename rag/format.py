"""Search results, and formatting them for a prompt: grouped by file, overlapping ranges merged,
each range fenced with its path and lines, within a token budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CHARS_PER_TOKEN = 4


@dataclass
class Hit:
    """One search result; `score` is higher for better, `lexical_only` while it has no vector."""

    path: str
    start_line: int
    end_line: int
    symbol: str | None
    kind: str
    language: str
    score: float
    lexical_only: bool
    text: str = field(repr=False)
    lexical_rank: int | None = None
    vector_rank: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The fields `search --json` prints."""
        out = asdict(self)
        out.pop("text")
        out["score"] = round(self.score, 6)
        return out


@dataclass
class Context:
    """Formatted context for a prompt, the files it shows and the hits it holds."""

    text: str
    files: list[str]
    hits: list[Hit]

    def sources(self) -> list[dict[str, Any]]:
        """What was shown, for storing with the execution: path, lines, symbol, score."""
        return [
            {
                "path": h.path,
                "start_line": h.start_line,
                "end_line": h.end_line,
                "symbol": h.symbol,
                "score": round(h.score, 6),
                "lexical_only": h.lexical_only,
            }
            for h in self.hits
        ]


def group_by_file(hits: list[Hit]) -> dict[str, list[Hit]]:
    """Hits grouped by path, files in order of their best hit, hits within a file by line."""
    groups: dict[str, list[Hit]] = {}
    for hit in hits:
        groups.setdefault(hit.path, []).append(hit)
    return {path: sorted(group, key=lambda h: h.start_line) for path, group in groups.items()}


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return ticks


def _merged_ranges(hits: list[Hit]) -> list[tuple[int, int, list[str], list[str]]]:
    """Overlapping or adjacent hits of one file merged: (start, end, lines, symbols)."""
    out: list[tuple[int, int, list[str], list[str]]] = []
    for hit in hits:
        lines = hit.text.splitlines()
        symbols = [hit.symbol] if hit.symbol else []
        if out and hit.start_line <= out[-1][1] + 1:
            start, end, have, names = out[-1]
            extra = lines[max(0, end - hit.start_line + 1) :]
            out[-1] = (start, max(end, hit.end_line), have + extra, names + symbols)
        else:
            out.append((hit.start_line, hit.end_line, lines, symbols))
    return out


def render(hits: list[Hit]) -> str:
    """Hits as markdown: one section per file with its line ranges, each range fenced."""
    sections: list[str] = []
    for path, group in group_by_file(hits).items():
        ranges = _merged_ranges(group)
        spans = ", ".join(f"{s}-{e}" for s, e, _, _ in ranges)
        parts = [f"### {path} (lines {spans})"]
        for start, end, lines, symbols in ranges:
            body = "\n".join(lines)
            ticks = _fence(body)
            label = f"lines {start}-{end}" + (
                f": {', '.join(dict.fromkeys(symbols))}" if symbols else ""
            )
            parts.append(f"{label}\n{ticks}\n{body}\n{ticks}")
        sections.append("\n".join(parts))
    return "\n\n".join(sections)


def file_listing(paths: list[str], budget_chars: int) -> str:
    """ "Repository files:" and as many paths as fit in budget_chars (with a count of the rest)."""
    if not paths:
        return ""
    shown = list(paths)
    while shown:
        more = len(paths) - len(shown)
        text = "Repository files:\n" + "\n".join(shown) + (f"\n... and {more} more" if more else "")
        if len(text) <= budget_chars:
            return text
        shown = shown[: len(shown) * 3 // 4] if len(shown) > 4 else shown[:-1]
    return ""


def format_context(hits: list[Hit], budget_tokens: int, paths: list[str] | None = None) -> Context:
    """The best hits that fit in `budget_tokens` (4 characters a token), grouped by file.

    With `paths`, a listing of the repository's files comes first, in at most a quarter of the
    budget. Hits are taken in rank order; one that would overflow is skipped and smaller ones
    still get their chance. When even the best hit alone is too long, its first lines are shown.
    """
    total = max(0, budget_tokens) * CHARS_PER_TOKEN
    listing = file_listing(paths or [], total // 4)
    budget = total - (len(listing) + 2 if listing else 0)
    chosen: list[Hit] = []
    text = ""
    for hit in hits:
        trial = render([*chosen, hit])
        if len(trial) <= budget:
            chosen.append(hit)
            text = trial
    if not chosen and hits and budget > 200:
        best = hits[0]
        lines = best.text.splitlines()
        while lines:
            cut = Hit(**{**asdict(best), "text": "\n".join(lines)})
            cut.end_line = best.start_line + len(lines) - 1
            text = render([cut])
            if len(text) <= budget:
                chosen = [cut]
                break
            lines = lines[: max(0, len(lines) * 3 // 4 if len(lines) > 4 else len(lines) - 1)]
        else:
            text = ""
    order = list(dict.fromkeys(h.path for h in chosen))
    if listing:
        text = f"{listing}\n\n{text}" if text else listing
    return Context(text=text, files=order, hits=chosen)
