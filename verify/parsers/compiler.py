"""Compiler-style lines (`path:line:col: error: message`, `path(line,col): error ...`) as the generic fallback."""

from __future__ import annotations

import re

from verify.parsers.base import Collector, ParseInput, ParseResult

_MAX_LINE = 10_000
_DEDUPE_WINDOW = 20_000
_LEVELS = r"fatal error|error|warning|note|info|hint"
# gcc, clang, go, rustc --message-format=short, mypy, flake8, pylint --output-format=parseable, ...
_COLON = re.compile(
    rf"^(?P<path>[^\s:][^:\n]*?):(?P<line>\d+)(?::(?P<col>\d+))?:\s*"
    rf"(?:(?P<level>{_LEVELS})(?:\[(?P<code1>[^\]]+)\])?\s*:\s*)?(?P<msg>.*)$",
    re.IGNORECASE,
)
# tsc, MSBuild, C#: path(line,col): error CODE: message
_PAREN = re.compile(
    rf"^(?P<path>[^\s(][^(\n]*?)\((?P<line>\d+)(?:,(?P<col>\d+))?\)\s*:\s*"
    rf"(?:(?P<level>{_LEVELS})\s+(?P<code1>[A-Za-z]+\d+)?\s*:\s*)?(?P<msg>.*)$",
    re.IGNORECASE,
)
# A trailing [code] as mypy and flake8-style tools print it, or a leading CODE as flake8 does.
_TRAILING_CODE = re.compile(r"\s+\[(?P<code>-?[A-Za-z][\w.=-]*)\]$")
_LEADING_CODE = re.compile(r"^(?P<code>[A-Z]{1,4}\d{2,5})\s+")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# eslint's default "stylish" format: a file's path on its own line, then indented problems.
_STYLISH = re.compile(
    r"^\s+(?P<line>\d+):(?P<col>\d+)\s+(?P<level>error|warning)\s+(?P<msg>.+?)(?:\s{2,}(?P<code1>\S+))?$"
)


def parse(src: ParseInput, out: Collector) -> ParseResult:
    """Findings for lines that name an existing file of the tree with a line number."""
    source = src.source()
    if source is None:
        lines = iter(src.output_tail.splitlines())
    else:
        try:
            fh = source.open("rb")
        except OSError as exc:
            return ParseResult(False, f"cannot read {source}: {exc}")
        lines = (raw[:_MAX_LINE].decode("utf-8", errors="replace") for raw in fh)
    entries = 0
    seen: set[tuple[str, int, str]] = set()
    exists: dict[str, bool] = {}
    current: str | None = None  # the file a stylish block is about

    def is_file(path: str) -> bool:
        """Whether a path names a file of the tree (junk that is no path at all is not)."""
        if path not in exists:
            try:
                exists[path] = len(path) < 1024 and "\0" not in path and (src.cwd / path).is_file()
            except (OSError, ValueError):
                exists[path] = False
            if len(exists) > 10_000:
                exists.clear()
        return exists.get(path, False)

    try:
        for raw in lines:
            text = _ANSI.sub("", raw.rstrip("\r\n"))
            match = _COLON.match(text) or _PAREN.match(text)
            if match is None:
                stylish = _STYLISH.match(text) if current else None
                if stylish is None:
                    if text and not text[0].isspace():
                        candidate = out.relative(text.strip())
                        current = candidate if candidate and is_file(candidate) else None
                    continue
                match, path = stylish, current
            else:
                path = out.relative(match.group("path").strip())
            if path is None or not is_file(path):
                continue  # "12:30:01: started" and friends are not file positions
            line = int(match.group("line"))
            message = match.group("msg").strip()
            code = match.group("code1")
            if code is None and (found := _TRAILING_CODE.search(message)):
                code, message = found.group("code"), message[: found.start()].rstrip()
            if code is None and (found := _LEADING_CODE.match(message)):
                code, message = found.group("code"), message[found.end() :]
            key = (path, line, message)
            if key in seen:
                continue
            if len(seen) >= _DEDUPE_WINDOW:
                seen.clear()  # repeats (make echoing, retries) come close together; memory stays bounded
            seen.add(key)
            level = (match.group("level") or "").lower() or None
            if level == "note":
                continue  # notes explain the error before them
            entries += 1
            out.add(
                message or text,
                rule=code,
                path=path,
                line=line,
                column=int(match.group("col")) if match.group("col") else None,
                level=level,
            )
    finally:
        if source is not None:
            fh.close()
    return ParseResult(entries > 0, None, entries)
