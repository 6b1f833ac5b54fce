"""Python unittest's text report (`python -m unittest`): one finding per FAIL or ERROR block, placed at the
deepest traceback frame inside the tree."""

from __future__ import annotations

import re
from collections.abc import Iterator

from verify.parsers.base import Collector, ParseInput, ParseResult

_SEPARATOR = "=" * 70
_HEADER = re.compile(r"^(?P<kind>FAIL|ERROR): (?P<name>\S+) \((?P<id>[^)]+)\)")
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')
_MAX_BLOCK_LINES = 400


def sniff(head: bytes) -> bool:
    """Output with unittest's `=====` separator followed by a FAIL or ERROR header."""
    return b"\n" + _SEPARATOR.encode() + b"\nFAIL: " in head or (
        b"\n" + _SEPARATOR.encode() + b"\nERROR: " in head
    )


def _lines(src: ParseInput) -> Iterator[str]:
    source = src.source()
    if source is None:
        yield from src.output_tail.splitlines()
        return
    with source.open("rb") as fh:
        for raw in fh:
            yield raw[:10_000].decode("utf-8", errors="replace").rstrip("\r\n")


def parse(src: ParseInput, out: Collector) -> ParseResult:
    """Each `FAIL:`/`ERROR:` block becomes a finding keyed by its test id."""
    entries = 0
    block: list[str] | None = None
    try:
        for line in _lines(src):
            if line == _SEPARATOR or line.startswith("-" * 70) and block is None:
                if block:
                    entries += _add(block, out)
                block = [] if line == _SEPARATOR else None
                continue
            if block is not None and len(block) < _MAX_BLOCK_LINES:
                if line.startswith("Ran ") and re.match(r"^Ran \d+ tests? in", line):
                    entries += _add(block, out)
                    block = None
                    continue
                block.append(line)
        if block:
            entries += _add(block, out)
    except OSError as exc:
        return ParseResult(False, f"cannot read the output: {exc}")
    return ParseResult(entries > 0, None, entries)


def _add(block: list[str], out: Collector) -> int:
    """Add the finding of one block; 0 when the block is not a FAIL/ERROR report."""
    header = _HEADER.match(block[0]) if block else None
    if header is None:
        return 0
    body = [line for line in block[1:] if not line.startswith("-" * 70)]
    while body and not body[-1].strip():
        body.pop()
    path = line_no = None
    last_frame = -1
    for index, text in enumerate(body):
        frame = _FRAME.match(text)
        if frame:
            last_frame = index
            rel = out.relative(frame.group("path"))
            if rel and not rel.startswith(("/", "..")):
                path, line_no = rel, int(frame.group("line"))
    # The exception line: the first unindented line after the last frame.
    after = [t for t in body[last_frame + 1 :] if t.strip() and not t[0].isspace()]
    summary = after[0].strip() if after else (body[-1].strip() if body else header.group("kind"))
    test_id = header.group("id")
    verb = "failed" if header.group("kind") == "FAIL" else "errored"
    out.add(
        f"{test_id} {verb}: {summary}",
        rule=f"test-{'failure' if verb == 'failed' else 'error'}",
        path=path,
        line=line_no,
        details="\n".join(body) or None,
        key=test_id,
    )
    return 1
