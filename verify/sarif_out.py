"""Findings as SARIF 2.1.0, the format GitHub code scanning accepts: one run per tool."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
LEVELS = {"major": "error", "medium": "warning", "minor": "note"}
BASELINE_STATES = {"new": "new", "open": "unchanged", "baseline": "unchanged"}
FINGERPRINT_KEY = "agentOrchestrator/v1"


def _uri(path: str) -> tuple[str, str | None]:
    """A repository-relative POSIX URI with the %SRCROOT% base, or a file URI for an outside path."""
    if os.path.isabs(path):
        return Path(path).as_uri(), None
    return path.replace(os.sep, "/").removeprefix("./"), SRCROOT


def _region(f: Mapping[str, Any]) -> dict[str, int] | None:
    """startLine/startColumn/endLine/endColumn from a finding, valid per the spec (all >= 1)."""
    line = f.get("line")
    if not isinstance(line, int) or line < 1:
        return None
    region = {"startLine": line}
    column = f.get("column")
    if isinstance(column, int) and column >= 1:
        region["startColumn"] = column
    end_line = f.get("end_line")
    if isinstance(end_line, int) and end_line >= line:
        region["endLine"] = end_line
        end_column = f.get("end_column")
        if (
            isinstance(end_column, int)
            and end_column >= 1
            and (end_line > line or end_column > region.get("startColumn", 0))
        ):
            region["endColumn"] = end_column
    return region


def _rule_id(f: Mapping[str, Any]) -> str:
    return str(f.get("rule") or f"{f.get('category') or 'custom'}-failure")


def to_sarif(
    findings: Iterable[Mapping[str, Any]],
    repo_root: str | Path | None,
    *,
    tool_version: str = "0.1.0",
) -> dict[str, Any]:
    """A SARIF log of the findings that are not resolved; those without a file become notifications."""
    by_tool: dict[str, list[Mapping[str, Any]]] = {}
    for f in findings:
        if f.get("status") == "resolved":
            continue
        by_tool.setdefault(str(f.get("tool") or "verify"), []).append(f)
    runs = []
    for tool, items in sorted(by_tool.items()):
        rules: dict[str, dict[str, Any]] = {}
        results: list[dict[str, Any]] = []
        notifications: list[dict[str, Any]] = []
        for f in items:
            rule_id = _rule_id(f)
            level = LEVELS.get(str(f.get("severity")), "warning")
            if rule_id not in rules:
                rule: dict[str, Any] = {
                    "id": rule_id,
                    "shortDescription": {"text": rule_id},
                    "defaultConfiguration": {"level": level},
                    "properties": {"category": f.get("category")},
                }
                if f.get("help_url"):
                    rule["helpUri"] = f["help_url"]
                rules[rule_id] = rule
            message = {"text": str(f.get("message") or rule_id)}
            if not f.get("path"):
                notifications.append(
                    {"level": level, "message": message, "descriptor": {"id": rule_id}}
                )
                continue
            uri, base = _uri(str(f["path"]))
            artifact: dict[str, Any] = {"uri": uri}
            if base:
                artifact["uriBaseId"] = base
            physical: dict[str, Any] = {"artifactLocation": artifact}
            region = _region(f)
            if region:
                physical["region"] = region
            result: dict[str, Any] = {
                "ruleId": rule_id,
                "ruleIndex": list(rules).index(rule_id),
                "level": level,
                "message": message,
                "locations": [{"physicalLocation": physical}],
                "partialFingerprints": {FINGERPRINT_KEY: str(f.get("fingerprint") or "")},
                "properties": {
                    "category": f.get("category"),
                    "severity": f.get("severity"),
                    "status": f.get("status"),
                },
            }
            state = BASELINE_STATES.get(str(f.get("status")))
            if state:
                result["baselineState"] = state
            results.append(result)
        run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": tool,
                    "semanticVersion": tool_version,
                    "rules": list(rules.values()),
                }
            },
            "results": results,
            "columnKind": "unicodeCodePoints",
            "invocations": [
                {"executionSuccessful": True, "toolExecutionNotifications": notifications}
            ],
        }
        if repo_root is not None:
            root = Path(repo_root).absolute().as_uri().rstrip("/") + "/"
            run["originalUriBaseIds"] = {SRCROOT: {"uri": root}}
        runs.append(run)
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}
