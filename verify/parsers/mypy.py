"""mypy's JSON output (`mypy --output json`): one JSON object per line, one finding per error."""

from __future__ import annotations

import json

from verify.parsers.base import Collector, ParseInput, ParseResult
from verify.parsers.jsonstream import head_of

_MAX_LINE = 1_000_000


def sniff(head: bytes) -> bool:
    """The first line is a JSON object with mypy's keys."""
    first = head_of(head).split(b"\n", 1)[0]
    return first.startswith(b"{") and b'"file"' in first and b'"severity"' in first


def parse(src: ParseInput, out: Collector) -> ParseResult:
    """Errors become findings (notes only explain an error, so they are not counted on their own)."""
    source = src.source()
    if source is None:
        return ParseResult(False)
    entries = 0
    bad = 0
    try:
        with source.open("rb") as fh:
            for raw in fh:
                if len(raw) > _MAX_LINE:
                    bad += 1
                    continue
                text = raw.strip()
                if not text.startswith(b"{"):
                    continue
                try:
                    item = json.loads(text)
                except (ValueError, RecursionError):
                    bad += 1
                    continue
                if not isinstance(item, dict) or "file" not in item:
                    bad += 1
                    continue
                if item.get("severity") == "note":
                    continue
                entries += 1
                col, end_col = item.get("column"), item.get("end_column")
                out.add(
                    str(item.get("message") or ""),
                    rule=item.get("code") or "error",
                    path=item.get("file"),
                    line=item.get("line"),
                    column=col + 1 if isinstance(col, int) and col >= 0 else None,
                    end_line=item.get("end_line"),
                    end_column=end_col + 1 if isinstance(end_col, int) and end_col >= 0 else None,
                    level=item.get("severity") or "error",
                    details=item.get("hint") or None,
                )
    except OSError as exc:
        return ParseResult(False, f"cannot read {source}: {exc}")
    if entries == 0 and bad:
        return ParseResult(False, f"{bad} line(s) of mypy output were not valid JSON")
    error = f"{bad} line(s) of mypy output were not valid JSON and were skipped" if bad else None
    return ParseResult(entries > 0 or bad == 0, error, entries)
