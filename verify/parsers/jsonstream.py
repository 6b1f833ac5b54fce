"""Incremental JSON reading with ijson: objects at chosen paths are built one at a time, never the whole file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import ijson
from ijson.common import ObjectBuilder

JSONError = ijson.JSONError
_SCALARS = ("string", "number", "boolean", "null")


def iter_objects(
    fh: IO[bytes], prefixes: set[str], prefixes_start: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str, Any]]:
    """Yield (prefix, "value", value) for every value at one of the ijson prefixes (e.g. "results.item"),
    ("", "start_map"/"start_array", None) for the top-level container, and (prefix, "start", None)
    when an object at a prefix in prefixes_start begins; raises JSONError on bad JSON."""
    builder: ObjectBuilder | None = None
    current = ""
    for prefix, event, value in ijson.parse(fh, use_float=True):
        if builder is not None:
            builder.event(event, value)
            if prefix == current and event in ("end_map", "end_array"):
                yield current, "value", builder.value
                builder = None
            continue
        if prefix == "" and event in ("start_map", "start_array"):
            yield "", event, None
        if prefix in prefixes:
            if event in ("start_map", "start_array"):
                builder = ObjectBuilder()
                builder.event(event, value)
                current = prefix
            elif event in _SCALARS:
                yield prefix, "value", value
        if prefix in prefixes_start and event == "start_map":
            yield prefix, "start", None


def head_of(data: bytes) -> bytes:
    """The first bytes of an output without leading whitespace or a UTF-8 byte-order mark."""
    return data.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()


MAX_DEPTH = 512


def too_deep(head: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the start of a JSON document nests deeper than any tool report does (such input is
    hostile or broken, and slow to build)."""
    depth = 0
    in_string = escaped = False
    for byte in head:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def read_head(path: Path, size: int = 65536) -> bytes:
    """The first bytes of a file (empty when it cannot be read)."""
    try:
        with path.open("rb") as fh:
            return fh.read(size)
    except OSError:
        return b""
