"""Pluggable document processors: each says which files it can process and turns one into chunks.

The registry tries custom processors first (registered in code or through the
`orchestrator.rag_processors` entry-point group), then the syntax-aware one, then line windows.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from rag.chunks import Chunk, make_chunk
from rag.languages import language_of

ENTRY_POINT_GROUP = "orchestrator.rag_processors"
WINDOW_LINES = 60
WINDOW_OVERLAP = 10


@runtime_checkable
class Processor(Protocol):
    """Turns one file's text into chunks; `version` is part of the chunk cache key."""

    name: str
    version: str

    def can_process(self, path: str) -> bool: ...

    def process(self, path: str, text: str) -> list[Chunk]: ...


def line_windows(
    path: str,
    language: str,
    lines: list[str],
    first: int,
    last: int,
    *,
    symbol: str | None = None,
    kind: str = "lines",
    size: int = WINDOW_LINES,
    overlap: int = WINDOW_OVERLAP,
) -> list[Chunk]:
    """Chunks of at most `size` lines over lines[first..last] (0-based, inclusive), overlapping."""
    chunks: list[Chunk] = []
    start = first
    while start <= last:
        end = min(last, start + size - 1)
        text = "".join(lines[start : end + 1])
        if text.strip():
            chunks.append(make_chunk(path, language, symbol, kind, start + 1, end + 1, text))
        if end >= last:
            break
        start = end + 1 - overlap
    return chunks


class LineWindowProcessor:
    """The fallback for any text file: fixed windows of lines with a small overlap."""

    name = "lines"
    version = "1"

    def can_process(self, path: str) -> bool:
        return True

    def process(self, path: str, text: str) -> list[Chunk]:
        lines = text.splitlines(keepends=True)
        return line_windows(path, language_of(path), lines, 0, len(lines) - 1)


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


class MarkdownProcessor:
    """Markdown split at headings; each section's symbol is its heading, long ones windowed."""

    name = "markdown"
    version = "1"

    def can_process(self, path: str) -> bool:
        return language_of(path) == "markdown"

    def process(self, path: str, text: str) -> list[Chunk]:
        lines = text.splitlines(keepends=True)
        starts: list[tuple[int, str | None]] = [(0, None)]
        fenced = False
        for number, line in enumerate(lines):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            match = None if fenced else _HEADING.match(line)
            if match and number > 0:
                starts.append((number, match.group(2)))
            elif match:
                starts[0] = (0, match.group(2))
        chunks: list[Chunk] = []
        for i, (start, title) in enumerate(starts):
            end = starts[i + 1][0] - 1 if i + 1 < len(starts) else len(lines) - 1
            chunks.extend(
                line_windows(path, "markdown", lines, start, end, symbol=title, kind="section")
                if title
                else line_windows(path, "markdown", lines, start, end)
            )
        return chunks


@cache
def plugin_processors() -> tuple[Processor, ...]:
    """Processors installed packages declare in the `orchestrator.rag_processors` entry points
    (an object, or a class instantiated without arguments); read once per process."""
    found: list[Processor] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        found.append(loaded() if isinstance(loaded, type) else loaded)
    return tuple(found)


class ProcessorRegistry:
    """Ordered processors; the first whose can_process accepts a path processes it."""

    def __init__(self, processors: list[Processor] | None = None, *, plugins: bool = True) -> None:
        from rag.syntax import SyntaxProcessor

        self._custom: list[Processor] = list(plugin_processors()) if plugins else []
        self._custom.extend(processors or [])
        self._builtin: list[Processor] = [
            SyntaxProcessor(),
            MarkdownProcessor(),
            LineWindowProcessor(),
        ]

    def register(self, processor: Processor) -> None:
        """Add a custom processor; it is tried before every built-in one."""
        if not isinstance(processor, Processor):
            raise TypeError(f"{processor!r} lacks name, version, can_process or process")
        self._custom.append(processor)

    @property
    def processors(self) -> list[Processor]:
        return [*self._custom, *self._builtin]

    def for_path(self, path: str) -> Processor:
        """The processor that handles `path`."""
        for processor in self.processors:
            if processor.can_process(path):
                return processor
        return self._builtin[-1]

    def signature(self) -> str:
        """Names and versions of every processor, so a change of processors re-chunks files."""
        return ",".join(f"{p.name}@{p.version}" for p in self.processors)
