"""Context retrieval for executor prompts: the Retriever protocol and a simple repository-files retriever.

The RAG package plugs a real index in behind the same protocol; RepoFilesRetriever needs no index:
it ranks the repository's files by how many of the query's words they share and inlines the best.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.procenv import safe_env

CHARS_PER_TOKEN = 4
_MAX_LISTED = 200
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*|[0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_PATHLIKE = re.compile(r"[\w.\-/]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "then",
        "this",
        "to",
        "was",
        "we",
        "when",
        "where",
        "which",
        "with",
        "without",
        "should",
        "must",
        "can",
        "will",
        "use",
        "using",
        "make",
        "new",
        "add",
        "all",
        "any",
        "each",
        "not",
        "no",
    ]
)


@dataclass(frozen=True)
class RetrievedContext:
    """Context text ready for a prompt, and the repository files it draws on."""

    text: str
    files: list[str] = field(default_factory=list)


class Retriever(Protocol):
    """Finds the parts of a repository relevant to a query, within a token budget."""

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> RetrievedContext: ...


def split_words(text: str) -> list[str]:
    """Lowercase words of a text with identifiers split (snake_case, camelCase, dots, slashes)."""
    words: list[str] = []
    for token in _WORD.findall(text):
        parts = _CAMEL.findall(token) or [token]
        words.extend(p.lower() for p in parts)
    return words


def _query_terms(query: str) -> set[str]:
    """The query's distinct words worth matching (no stop words, no single letters)."""
    return {w for w in split_words(query) if len(w) > 1 and w not in _STOPWORDS}


def _named_in(query: str, path: str) -> bool:
    """True when the query names this file by its path or its base name."""
    mentions = {m.strip("./") for m in _PATHLIKE.findall(query)}
    name = path.rsplit("/", 1)[-1]
    return path in mentions or (name in mentions and ("." in name or len(name) > 3))


class RepoFilesRetriever:
    """Ranks the repository's files by word overlap with the query and inlines the top ones."""

    def __init__(self, exclude: list[str] | None = None, max_file_bytes: int = 100_000) -> None:
        self.exclude = list(exclude or [])
        self.max_file_bytes = max_file_bytes

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> RetrievedContext:
        """Context for `query` from the files of `repo`, at most about `budget_tokens` tokens long."""
        return await asyncio.to_thread(self._retrieve, query, Path(repo), budget_tokens)

    def _excluded(self, path: str) -> bool:
        """True when a configured glob (on the path, its base name or a folder) excludes the path."""
        name = path.rsplit("/", 1)[-1]
        for pattern in self.exclude:
            folder = pattern.rstrip("/*")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(name, pattern):
                return True
            if (
                folder
                and pattern != folder
                and (path.startswith(folder + "/") or f"/{folder}/" in f"/{path}")
            ):
                return True
        return False

    def _list_files(self, repo: Path) -> list[str]:
        """Tracked and untracked-but-not-ignored files of the repository, minus excluded ones."""
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            env=safe_env(),
            check=False,
        )
        if proc.returncode != 0:
            return []
        paths = sorted({p for p in proc.stdout.decode("utf-8", errors="replace").split("\0") if p})
        return [p for p in paths if not self._excluded(p)]

    def _read(self, repo: Path, rel: str) -> str | None:
        """A file's text, or None for missing, oversized or binary files."""
        target = repo / rel
        try:
            if (
                not target.is_file()
                or target.is_symlink()
                or target.stat().st_size > self.max_file_bytes
            ):
                return None
            data = target.read_bytes()
        except OSError:
            return None
        if b"\0" in data:
            return None
        return data.decode("utf-8", errors="replace")

    def _retrieve(self, query: str, repo: Path, budget_tokens: int) -> RetrievedContext:
        """The blocking part of retrieve: list, read, score, format."""
        budget = max(0, budget_tokens) * CHARS_PER_TOKEN
        paths = self._list_files(repo)
        if not paths or budget == 0:
            return RetrievedContext(text="", files=[])
        terms = _query_terms(query)
        contents: dict[str, str] = {}
        counts: dict[str, Counter[str]] = {}
        for rel in paths:
            text = self._read(repo, rel)
            if text is not None:
                contents[rel] = text
                counts[rel] = Counter(w for w in split_words(text) if w in terms)
        total = max(1, len(contents))
        doc_freq = Counter(t for c in counts.values() for t in c)
        scores: dict[str, float] = {}
        for rel, text in contents.items():
            stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1].lstrip(".") else rel
            path_words = set(split_words(stem))  # the extension alone says little about relevance
            score = 1000.0 if _named_in(query, rel) else 0.0
            for term in terms:
                idf = math.log(1 + total / (1 + doc_freq.get(term, 0)))
                if term in path_words:
                    score += 3.0 * idf
                count = counts[rel].get(term, 0)
                if count:
                    score += (1.0 + math.log(count)) * idf
            if score > 0:
                scores[rel] = score
        ranked = sorted(scores, key=lambda p: (-scores[p], p))
        return self._format(paths, ranked, contents, budget)

    @staticmethod
    def _format(
        paths: list[str], ranked: list[str], contents: dict[str, str], budget: int
    ) -> RetrievedContext:
        """The listing plus as many whole top-ranked files as fit in `budget` characters."""
        listed = paths[:_MAX_LISTED]
        more = f"\n... and {len(paths) - len(listed)} more" if len(paths) > len(listed) else ""
        listing = "Repository files:\n" + "\n".join(listed) + more
        while len(listing) > budget // 4 and len(listed) > 10:
            listed = listed[: len(listed) // 2]
            listing = (
                "Repository files:\n"
                + "\n".join(listed)
                + f"\n... and {len(paths) - len(listed)} more"
            )
        if len(listing) > budget:
            listing = ""
        sections = [listing] if listing else []
        used = len(listing)
        included: list[str] = []
        for rel in ranked:
            text = contents[rel]
            ticks = "```"
            while ticks in text:
                ticks += "`"
            body = text if text.endswith("\n") or not text else text + "\n"
            section = f"### {rel}\n{ticks}\n{body}{ticks}"
            if used + len(section) + 2 > budget:
                continue
            sections.append(section)
            used += len(section) + 2
            included.append(rel)
        return RetrievedContext(text="\n\n".join(sections), files=included)


class NoRetrieval:
    """The retriever used when `rag.enabled` is off: prompts get no repository context."""

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> RetrievedContext:
        return RetrievedContext(text="", files=[])
