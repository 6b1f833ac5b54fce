"""What every parser gets (the command's output on disk, its report file) and how it hands findings back."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from verify.capped import DETAILS_BYTES, MESSAGE_BYTES, cap_text
from verify.findings import VerifyFinding
from verify.severity import SEVERITY_RANK, SeverityPolicy

_MAX_SOURCE_BYTES = 2_000_000
_SOURCE_CACHE_FILES = 64


@dataclass
class ParseInput:
    """One finished command: where its full output and report are, and what it was."""

    category: str
    tool: str
    command: str
    cwd: Path
    exit_code: int | None
    output_tail: str
    output_file: Path | None = None  # the whole merged output, as written to disk
    report: Path | None = None  # a report file the command wrote ({report} in the command)

    def source(self) -> Path | None:
        """The file to parse: the report when the command wrote one, else its output."""
        if self.report is not None and self.report.is_file():
            return self.report
        if self.output_file is not None and self.output_file.is_file():
            return self.output_file
        return None


@dataclass
class ParseResult:
    """What a parser made of an output: recognised or not, and why it stopped early if it did."""

    recognised: bool
    error: str | None = None
    entries: int = 0  # problems the tool reported (kept or dropped)


class Collector:
    """Builds findings with relative paths, source snippets and configured severities, keeping at most
    `limit` of them; past the limit the least severe are dropped and counted."""

    def __init__(
        self,
        *,
        category: str,
        tool: str,
        cwd: Path,
        policy: SeverityPolicy,
        limit: int = 1000,
    ) -> None:
        self.category = category
        self.tool = tool
        self.cwd = cwd
        self.policy = policy
        self.limit = max(1, limit)
        self._buckets: dict[int, list[VerifyFinding]] = {0: [], 1: [], 2: []}
        self._count = 0
        self.dropped = 0
        self.dropped_by_severity: dict[str, int] = {}
        self._sources: OrderedDict[str, list[str] | None] = OrderedDict()
        self._cwd_text = str(cwd).rstrip("/") + "/"
        self._relative: dict[str, str | None] = {}
        self._severity: dict[tuple[str, str, str | None, str | None], str] = {}

    @property
    def findings(self) -> list[VerifyFinding]:
        """The kept findings, most severe first, in the order they were reported within a severity."""
        return [f for rank in sorted(self._buckets) for f in self._buckets[rank]]

    def relative(self, path: str | None) -> str | None:
        """A path relative to the working folder in POSIX form when it lies inside it."""
        if not path:
            return None
        if path not in self._relative:
            if len(self._relative) > 10_000:
                self._relative.clear()
            self._relative[path] = self._make_relative(path)
        return self._relative[path]

    def _make_relative(self, path: str) -> str | None:
        text = path.strip()
        text = text.removeprefix("file://")
        if text.startswith(self._cwd_text):
            text = text[len(self._cwd_text) :]
        elif os.path.isabs(text):
            try:
                text = os.path.relpath(os.path.realpath(text), os.path.realpath(self.cwd))
            except ValueError:
                return text
            if text.startswith(".."):
                return path.strip()
        text = os.path.normpath(text).replace(os.sep, "/")
        return text.removeprefix("./")

    def source_line(self, path: str | None, line: int | None) -> str | None:
        """The stripped text of a line of a source file in the working folder, or None."""
        if not path or not line or line < 1 or os.path.isabs(path) or path.startswith(".."):
            return None
        if path not in self._sources:
            lines: list[str] | None = None
            target = self.cwd / path
            try:
                if target.is_file() and target.stat().st_size <= _MAX_SOURCE_BYTES:
                    lines = target.read_text(encoding="utf-8", errors="replace").splitlines()
            except (OSError, ValueError):  # unreadable, or a "path" no file system accepts
                lines = None
            self._sources[path] = lines
            if len(self._sources) > _SOURCE_CACHE_FILES:
                self._sources.popitem(last=False)
        lines = self._sources[path]
        if lines is None or line > len(lines):
            return None
        text = " ".join(lines[line - 1].split())
        return text[:500] or None

    def add(
        self,
        message: str,
        *,
        rule: str | None = None,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        end_line: int | None = None,
        end_column: int | None = None,
        level: str | None = None,
        details: str | None = None,
        help_url: str | None = None,
        key: str | None = None,
        severity: str | None = None,
        category: str | None = None,
        tool: str | None = None,
    ) -> None:
        """Record one problem; the severity comes from config unless given."""
        category = category or self.category
        tool = tool or self.tool
        chosen = severity or self._severity_of(category, tool, rule, level)
        rank = SEVERITY_RANK.get(chosen, 1)
        if self._count >= self.limit and rank >= self._worst_rank():
            self._drop(chosen)  # no more severe than anything kept: not worth building
            return
        rel = self.relative(path)
        line = _positive(line)
        finding = VerifyFinding(
            category=category,
            severity=chosen,
            tool=tool,
            message=cap_text(message.strip() or "(no message)", MESSAGE_BYTES),
            rule=rule or None,
            path=rel,
            line=line,
            column=_positive(column),
            end_line=_positive(end_line),
            end_column=_positive(end_column),
            snippet=self.source_line(rel, line),
            details=cap_text(details, DETAILS_BYTES) if details else None,
            help_url=help_url or None,
            level=level,
            key=key,
        )
        self._buckets.setdefault(rank, []).append(finding)
        self._count += 1
        if self._count > self.limit:
            gone = self._buckets[self._worst_rank()].pop()
            self._count -= 1
            self._drop(gone.severity)

    def _severity_of(self, category: str, tool: str, rule: str | None, level: str | None) -> str:
        """The configured severity, remembered per (category, tool, rule, level)."""
        key = (category, tool, rule, level)
        found = self._severity.get(key)
        if found is None:
            found = self.policy.severity(category, tool, rule, level)
            if len(self._severity) < 10_000:
                self._severity[key] = found
        return found

    def _worst_rank(self) -> int:
        return max(r for r, items in self._buckets.items() if items)

    def _drop(self, severity: str) -> None:
        self.dropped += 1
        self.dropped_by_severity[severity] = self.dropped_by_severity.get(severity, 0) + 1


def _positive(value: object) -> int | None:
    """An int >= 1 from a tool's number, or None (tools use 0 or -1 for "unknown")."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None
