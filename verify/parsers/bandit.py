"""bandit's JSON report (`bandit -f json`): one finding per issue, its own severity mapped by config."""

from __future__ import annotations

from verify.parsers.base import Collector, ParseInput, ParseResult
from verify.parsers.jsonstream import (
    MAX_DEPTH,
    JSONError,
    head_of,
    iter_objects,
    read_head,
    too_deep,
)


def sniff(head: bytes) -> bool:
    """A JSON object with bandit's top-level keys."""
    text = head_of(head)[:4000]
    return text.startswith(b"{") and (
        (b'"results"' in text and (b'"metrics"' in text or b'"generated_at"' in text))
        or b'"issue_severity"' in text
    )


def parse(src: ParseInput, out: Collector) -> ParseResult:
    """Findings for `results` (and files bandit could not scan, from `errors`)."""
    source = src.source()
    if source is None:
        return ParseResult(False)
    if too_deep(read_head(source)):
        return ParseResult(True, f"bandit's JSON nests deeper than {MAX_DEPTH} levels; not read")
    entries = 0
    started = False
    try:
        with source.open("rb") as fh:
            for prefix, event, item in iter_objects(fh, {"results.item", "errors.item"}):
                if prefix == "":
                    if event != "start_map":
                        return ParseResult(False)
                    started = True
                    continue
                if not isinstance(item, dict):
                    continue
                entries += 1
                if prefix == "errors.item":
                    out.add(
                        f"bandit could not scan this file: {item.get('reason') or 'unknown reason'}",
                        rule="scan-error",
                        path=item.get("filename"),
                        level="LOW",
                    )
                    continue
                cwe = item.get("issue_cwe") or {}
                confidence = item.get("issue_confidence")
                details = str(item.get("code") or "").rstrip() or None
                if confidence:
                    details = f"confidence: {confidence}" + (f"\n{details}" if details else "")
                if isinstance(cwe, dict) and cwe.get("id"):
                    details = f"CWE-{cwe['id']}" + (f"; {details}" if details else "")
                out.add(
                    str(item.get("issue_text") or ""),
                    rule=item.get("test_id") or item.get("test_name"),
                    path=item.get("filename"),
                    line=item.get("line_number"),
                    column=(item.get("col_offset") or 0) + 1
                    if item.get("col_offset") is not None
                    else None,
                    level=str(item.get("issue_severity") or "") or None,
                    details=details,
                    help_url=item.get("more_info"),
                )
    except JSONError as exc:
        if not started:
            return ParseResult(False)
        return ParseResult(True, f"bandit's JSON is truncated or malformed ({exc})", entries)
    except OSError as exc:
        return ParseResult(False, f"cannot read {source}: {exc}")
    return ParseResult(started, None, entries)
