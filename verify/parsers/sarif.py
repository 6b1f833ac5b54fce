"""SARIF 2.1 input: semgrep, CodeQL, eslint's SARIF formatter and any SARIF tool work without a parser of ours."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import ijson

from verify.parsers.base import Collector, ParseInput, ParseResult
from verify.parsers.jsonstream import (
    MAX_DEPTH,
    JSONError,
    head_of,
    iter_objects,
    read_head,
    too_deep,
)

_RUN = "runs.item"
_PREFIXES = {
    f"{_RUN}.tool.driver.name",
    f"{_RUN}.tool.driver.rules.item",
    f"{_RUN}.originalUriBaseIds",
    f"{_RUN}.results.item",
}


def sniff(head: bytes) -> bool:
    """A JSON object that names a SARIF schema or version and has runs."""
    text = head_of(head)[:8000]
    return (
        text.startswith(b"{")
        and b'"runs"' in text
        and (b"sarif" in text.lower() or b'"version"' in text)
    )


def _text(value: Any) -> str:
    """A SARIF message object's text (or markdown), or a plain string."""
    if isinstance(value, dict):
        return str(value.get("text") or value.get("markdown") or "")
    return str(value or "")


def _level_from_security_severity(props: Any) -> str | None:
    """GitHub's numeric `security-severity` property as high, medium or low."""
    if not isinstance(props, dict) or props.get("security-severity") is None:
        return None
    try:
        score = float(props["security-severity"])
    except (TypeError, ValueError):
        return None
    return "high" if score >= 7.0 else "medium" if score >= 4.0 else "low"


class _Run:
    """What one SARIF run says about its tool and rules, read before its results."""

    def __init__(self) -> None:
        self.tool: str | None = None
        self.rules: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.bases: dict[str, str] = {}

    def rule(self, result: dict[str, Any]) -> dict[str, Any]:
        index = result.get("ruleIndex")
        if isinstance(index, int) and 0 <= index < len(self.rules):
            return self.rules[index]
        rule_id = result.get("ruleId")
        return self.by_id.get(str(rule_id), {}) if rule_id else {}

    def uri(self, location: dict[str, Any]) -> str | None:
        artifact = location.get("artifactLocation") or {}
        uri = artifact.get("uri")
        if not uri:
            return None
        base = self.bases.get(str(artifact.get("uriBaseId") or ""))
        if base and not uri.startswith(("file:", "/")):
            uri = base.rstrip("/") + "/" + uri
        return str(uri).removeprefix("file://")


def _add(run: _Run, result: dict[str, Any], out: Collector) -> None:
    rule = run.rule(result)
    rule_id = result.get("ruleId") or rule.get("id")
    defaults = rule.get("defaultConfiguration") or {}
    props = rule.get("properties") or {}
    level = (
        _level_from_security_severity(result.get("properties"))
        or _level_from_security_severity(props)
        or result.get("level")
        or defaults.get("level")
        or "warning"
    )
    path = line = column = end_line = end_column = None
    locations = result.get("locations") or []
    if locations and isinstance(locations[0], dict):
        physical = locations[0].get("physicalLocation") or {}
        path = run.uri(physical)
        region = physical.get("region") or {}
        line, column = region.get("startLine"), region.get("startColumn")
        end_line, end_column = region.get("endLine"), region.get("endColumn")
    message = _text(result.get("message")) or _text(rule.get("shortDescription")) or str(rule_id)
    out.add(
        message,
        rule=str(rule_id) if rule_id else None,
        path=path,
        line=line,
        column=column,
        end_line=end_line,
        end_column=end_column,
        level=str(level),
        details=_text(rule.get("fullDescription")) or None,
        help_url=rule.get("helpUri"),
        tool=(run.tool or out.tool).lower(),
    )


def _one_run(source: Path) -> _Run | None:
    """The tool, rules and URI bases of a well-formed log with exactly one run, read with ijson's
    C item builder; None for anything else (which the event-by-event reader handles)."""
    run = _Run()
    try:
        with source.open("rb") as fh:
            tools = list(itertools.islice(ijson.items(fh, f"{_RUN}.tool", use_float=True), 2))
        if len(tools) != 1 or not isinstance(tools[0], dict):
            return None
        with source.open("rb") as fh:
            bases = list(itertools.islice(ijson.items(fh, f"{_RUN}.originalUriBaseIds"), 2))
    except (JSONError, OSError):
        return None
    driver = tools[0].get("driver") or {}
    run.tool = str(driver.get("name") or "") or None
    for rule in driver.get("rules") or []:
        if isinstance(rule, dict):
            run.rules.append(rule)
            if rule.get("id"):
                run.by_id[str(rule["id"])] = rule
    if bases and isinstance(bases[0], dict):
        run.bases = {k: str(v.get("uri") or "") for k, v in bases[0].items() if isinstance(v, dict)}
    return run


def _parse_one_run(source: Path, run: _Run, out: Collector) -> ParseResult:
    """The results of a one-run log, built in C one at a time."""
    entries = 0
    with source.open("rb") as fh:
        for result in ijson.items(fh, f"{_RUN}.results.item", use_float=True):
            if isinstance(result, dict):
                entries += 1
                if not result_suppressed(result):
                    _add(run, result, out)
    return ParseResult(True, None, entries)


def parse(src: ParseInput, out: Collector) -> ParseResult:
    """Findings for every result of every run, each with its run's tool name."""
    source = src.source()
    if source is None:
        return ParseResult(False)
    head = read_head(source)
    if too_deep(head):
        return ParseResult(True, f"the SARIF file nests deeper than {MAX_DEPTH} levels; not read")
    if head_of(head).startswith(b"{") and (single := _one_run(source)) is not None:
        return _parse_one_run(source, single, out)
    entries = 0
    started = False
    run = _Run()
    try:
        with source.open("rb") as fh:
            for prefix, event, value in iter_objects(fh, _PREFIXES, frozenset({_RUN})):
                if prefix == "":
                    if event != "start_map":
                        return ParseResult(False)
                    started = True
                elif event == "start":
                    run = _Run()
                elif prefix.endswith(".driver.name"):
                    run.tool = str(value)
                elif prefix.endswith(".rules.item") and isinstance(value, dict):
                    run.rules.append(value)
                    if value.get("id"):
                        run.by_id[str(value["id"])] = value
                elif prefix.endswith(".originalUriBaseIds") and isinstance(value, dict):
                    run.bases = {
                        k: str(v.get("uri") or "") for k, v in value.items() if isinstance(v, dict)
                    }
                elif prefix.endswith(".results.item") and isinstance(value, dict):
                    entries += 1
                    if result_suppressed(value):
                        continue
                    _add(run, value, out)
    except JSONError as exc:
        if not started:
            return ParseResult(False)
        return ParseResult(True, f"the SARIF file is truncated or malformed ({exc})", entries)
    except OSError as exc:
        return ParseResult(False, f"cannot read {source}: {exc}")
    return ParseResult(started, None, entries)


def result_suppressed(result: dict[str, Any]) -> bool:
    """Results a suppression (in source or external) marks as accepted are not problems."""
    suppressions = result.get("suppressions") or []
    return any(
        isinstance(s, dict) and s.get("status", "accepted") == "accepted" for s in suppressions
    )
