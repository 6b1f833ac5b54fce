"""ruff's JSON output (`ruff check --output-format=json`): one finding per violation."""

from __future__ import annotations

from typing import Any

import ijson

from verify.parsers.base import Collector, ParseInput, ParseResult
from verify.parsers.jsonstream import MAX_DEPTH, JSONError, head_of, read_head, too_deep


def sniff(head: bytes) -> bool:
    """A JSON array whose first object has ruff's keys (or an empty array)."""
    text = head_of(head)
    if not text.startswith(b"["):
        return False
    rest = text[1:].lstrip()
    return rest.startswith(b"]") or (b'"code"' in text[:4000] and b'"location"' in text[:4000])


def _pos(item: dict[str, Any], key: str) -> tuple[Any, Any]:
    where = item.get(key) or {}
    return (where.get("row"), where.get("column")) if isinstance(where, dict) else (None, None)


def parse(src: ParseInput, out: Collector) -> ParseResult:
    """Findings for every violation in the array, read one at a time."""
    source = src.source()
    if source is None:
        return ParseResult(False)
    if too_deep(read_head(source)):
        return ParseResult(True, f"ruff's JSON nests deeper than {MAX_DEPTH} levels; not read")
    entries = 0
    started = False
    try:
        with source.open("rb") as fh:
            if not head_of(fh.read(4096)).startswith(b"["):
                return ParseResult(False)
            fh.seek(0)
            started = True
            for item in ijson.items(fh, "item", use_float=True):
                if not isinstance(item, dict):
                    continue
                entries += 1
                row, col = _pos(item, "location")
                end_row, end_col = _pos(item, "end_location")
                code = item.get("code")
                fix = item.get("fix") or {}
                hint = fix.get("message") if isinstance(fix, dict) else None
                out.add(
                    str(item.get("message") or ""),
                    rule=str(code) if code else "syntax-error",
                    path=item.get("filename"),
                    line=row,
                    column=col,
                    end_line=end_row,
                    end_column=end_col,
                    details=f"fix: {hint}" if hint else None,
                    help_url=item.get("url"),
                )
    except JSONError as exc:
        if not started:
            return ParseResult(False)
        return ParseResult(True, f"ruff's JSON is truncated or malformed ({exc})", entries)
    except OSError as exc:
        return ParseResult(False, f"cannot read {source}: {exc}")
    return ParseResult(started, None, entries)
