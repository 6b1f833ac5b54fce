"""A verification as data: finding dicts with their fingerprints, and counts by severity, category and tool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from verify.findings import CATEGORIES, SEVERITIES, VerifyFinding
from verify.pipeline import VerifyReport
from verify.thresholds import Breach


def finding_dict(f: VerifyFinding, fingerprint: str, status: str = "new") -> dict[str, Any]:
    """One finding in the `verify --json` shape (the same fields the store keeps)."""
    data = asdict(f)
    data.pop("key", None)
    data["fingerprint"] = fingerprint
    data["status"] = status
    data["location"] = (
        None if f.path is None else (f"{f.path}:{f.line}" if f.line is not None else f.path)
    )
    return data


def counts(findings: Sequence[VerifyFinding]) -> dict[str, dict[str, int]]:
    """Findings counted by severity, category and tool."""
    by_severity = dict.fromkeys(SEVERITIES, 0)
    by_category = dict.fromkeys(CATEGORIES, 0)
    by_tool: dict[str, int] = {}
    for f in findings:
        by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
        by_category[f.category] = by_category.get(f.category, 0) + 1
        by_tool[f.tool] = by_tool.get(f.tool, 0) + 1
    return {"by_severity": by_severity, "by_category": by_category, "by_tool": by_tool}


def summary(report: VerifyReport, breaches: Sequence[Breach], origin: str) -> dict[str, Any]:
    """The `summary` object of `verify --json`."""
    data: dict[str, Any] = {"total": len(report.findings), **counts(report.findings)}
    data["dropped"] = report.dropped()
    data["thresholds_exceeded"] = [asdict(b) for b in breaches]
    data["steps_from"] = origin
    data["steps"] = [
        {
            "category": o.step.category,
            "tool": o.step.tool_label,
            "command": o.command,
            "source": o.step.source,
            "skipped": o.skipped,
            "exit_code": o.result.exit_code if o.result else None,
            "timed_out": bool(o.result and o.result.timed_out),
            "duration_seconds": round(o.result.duration_seconds, 3) if o.result else None,
            "parser": o.parser,
            "findings": o.findings,
            "reported": o.entries,
            "parse_error": o.parse_error,
            "report": str(o.report) if o.report else None,
            "output": str(o.output_file) if o.output_file else None,
        }
        for o in report.outcomes
    ]
    data["notes"] = report.notes
    return data
