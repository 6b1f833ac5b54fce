"""Analytics over stored runs: the document `orchestrator stats --json` prints and the app plots.

The store groups the rows (core/state/stats.py, as a core.records.StatsRows); this module shapes them into one JSON-ready
document and computes what SQL leaves to Python (how long a person took to answer). The shape is
stable and documented in the README ("Analytics"); every list is sorted, days are UTC
`YYYY-MM-DD` strings taken from the stored timestamps, so the figures do not depend on today.
"""

from __future__ import annotations

import os
import re
import statistics
from datetime import date, timedelta
from typing import Any

from core.errors import InputError
from core.records import Category, RunStatus, Severity, StatsRows
from core.timeutil import parse_ts

STATS_SCHEMA = 1
ANSWERED = ("approved", "rejected")
# Bounds (seconds) of the waiting-time buckets and their labels; the last bucket is open.
WAIT_BUCKETS: tuple[tuple[float, str], ...] = (
    (60, "<1m"),
    (600, "1-10m"),
    (3600, "10-60m"),
    (8 * 3600, "1-8h"),
    (float("inf"), ">8h"),
)
_RELATIVE = re.compile(r"^(\d{1,4})d$")


def parse_since(text: str, today: date) -> str:
    """A `--since` value as the ISO date (or timestamp) runs are compared with: `YYYY-MM-DD`, a
    full ISO timestamp, or `Nd` for the last N days counting today."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        days = int(relative.group(1))
        if days < 1:
            raise InputError(f"--since {text!r}: give at least 1 day, e.g. 7d")
        return (today - timedelta(days=days - 1)).isoformat()
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
        parse_ts(value)
    except ValueError:
        raise InputError(
            f"--since {text!r} is not a date; give YYYY-MM-DD (UTC), an ISO timestamp, or Nd "
            "for the last N days"
        ) from None
    return value


def repo_filter(path: str) -> str:
    """A `--repo` path as runs store it (absolute, `~` expanded)."""
    return os.path.abspath(os.path.expanduser(path))


def stats_document(
    rows: StatsRows, *, since: str | None = None, repo: str | None = None
) -> dict[str, Any]:
    """The analytics document of the grouped rows (see the module docstring)."""
    runs_per_day = _runs_per_day(rows)
    usage_per_day: list[dict[str, Any]] = [
        {
            "day": day,
            "model": model,
            "role": role,
            "calls": calls,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": cached,
            "tokens": prompt + completion,
            "cost_usd": round(cost, 10),
        }
        for day, model, role, calls, prompt, completion, cached, cost in rows.usage
    ]
    findings_per_day, by_category = _findings(rows)
    waiting = _waiting(rows)
    by_status = {s.value: 0 for s in RunStatus}
    for _, status, n in rows.runs:
        by_status[status] = by_status.get(status, 0) + n
    by_severity = {s.value: 0 for s in Severity}
    for entry in findings_per_day:
        for severity, n in entry["by_severity"].items():
            by_severity[severity] = by_severity.get(severity, 0) + n
    open_findings = {s.value: 0 for s in Severity}
    for severity, n in rows.open_findings:
        open_findings[severity] = open_findings.get(severity, 0) + n
    attempts = _attempts(rows)
    days = sorted(
        {e["day"] for e in runs_per_day}
        | {e["day"] for e in usage_per_day}
        | {e["day"] for e in findings_per_day}
    )
    totals = {
        "runs": sum(by_status.values()),
        "runs_by_status": by_status,
        "phases": rows.phases[0],
        "phases_completed": rows.phases[1],
        "attempts": sum(e["attempts"] * e["phases"] for e in attempts),
        "calls": sum(e["calls"] for e in usage_per_day),
        "prompt_tokens": sum(e["prompt_tokens"] for e in usage_per_day),
        "completion_tokens": sum(e["completion_tokens"] for e in usage_per_day),
        "cached_tokens": sum(e["cached_tokens"] for e in usage_per_day),
        "tokens": sum(e["tokens"] for e in usage_per_day),
        "cost_usd": round(sum(cost for *_, cost in rows.usage), 10),
        "findings": sum(by_severity.values()),
        "findings_by_severity": by_severity,
        "findings_by_category": by_category,
        "open_findings": open_findings,
        "interventions": waiting["asked"],
        "waiting_seconds": waiting["total_seconds"],
    }
    return {
        "schema": STATS_SCHEMA,
        "filters": {"since": since, "repo": repo},
        "days": {"first": days[0] if days else None, "last": days[-1] if days else None},
        "totals": totals,
        "runs_per_day": runs_per_day,
        "usage_per_day": usage_per_day,
        "attempts_per_phase": attempts,
        "findings_per_day": findings_per_day,
        "waiting": waiting,
        "failing_checks": [
            {"category": cat, "tool": tool, "attempts": tries, "findings": n, "major": major}
            for cat, tool, tries, n, major in rows.checks
        ],
    }


def _runs_per_day(rows: StatsRows) -> list[dict[str, Any]]:
    """Runs created each day, by the status a person sees now."""
    days: dict[str, dict[str, int]] = {}
    for day, status, n in rows.runs:
        counts = days.setdefault(day, {})
        counts[status] = counts.get(status, 0) + n
    return [
        {"day": day, "runs": sum(counts.values()), "by_status": dict(sorted(counts.items()))}
        for day, counts in sorted(days.items())
    ]


def _findings(rows: StatsRows) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Findings recorded each day by severity and category (baseline ones excluded), and the
    totals by category."""
    days: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    by_category = {c.value: 0 for c in Category}
    for day, severity, category, n in rows.findings:
        sev, cat = days.setdefault(day, ({s.value: 0 for s in Severity}, {}))
        sev[severity] = sev.get(severity, 0) + n
        cat[category] = cat.get(category, 0) + n
        by_category[category] = by_category.get(category, 0) + n
    per_day = [
        {
            "day": day,
            "findings": sum(sev.values()),
            "by_severity": sev,
            "by_category": dict(sorted(cat.items())),
        }
        for day, (sev, cat) in sorted(days.items())
    ]
    return per_day, by_category


def _attempts(rows: StatsRows) -> list[dict[str, Any]]:
    """Phases by how many attempts they took (0: never started), with their statuses."""
    tries: dict[int, dict[str, int]] = {}
    for n_tries, status, n in rows.attempts:
        counts = tries.setdefault(n_tries, {})
        counts[status] = counts.get(status, 0) + n
    return [
        {"attempts": n, "phases": sum(c.values()), "by_status": dict(sorted(c.items()))}
        for n, c in sorted(tries.items())
    ]


def _waiting(rows: StatsRows) -> dict[str, Any]:
    """How long people took to answer interventions: from the question to its answer (answers
    `--yes` gave are counted apart, as nobody waited for them)."""
    seconds: list[float] = []
    by_kind: dict[str, list[float]] = {}
    per_day: dict[str, list[float]] = {}
    asked_per_day: dict[str, int] = {}
    pending = withdrawn = auto = 0
    for day, kind, status, asked, answered, by_yes in rows.waits:
        asked_per_day[day] = asked_per_day.get(day, 0) + 1
        by_kind.setdefault(kind, [])
        if status == "pending":
            pending += 1
        elif status not in ANSWERED or answered is None:
            withdrawn += 1
        elif by_yes:
            auto += 1  # `--yes` answered it: nobody waited
        else:
            wait = max(0.0, (parse_ts(answered) - parse_ts(asked)).total_seconds())
            seconds.append(wait)
            by_kind[kind].append(wait)
            per_day.setdefault(day, []).append(wait)
    buckets = {label: 0 for _, label in WAIT_BUCKETS}
    for wait in seconds:
        buckets[next(label for bound, label in WAIT_BUCKETS if wait < bound)] += 1
    return {
        "asked": len(rows.waits),
        "answered": len(seconds),
        "pending": pending,
        "withdrawn": withdrawn,
        "auto_approved": auto,
        **_spread(seconds),
        "buckets": [{"label": label, "answered": n} for label, n in buckets.items()],
        "by_kind": {
            kind: {"answered": len(w), **_spread(w)} for kind, w in sorted(by_kind.items())
        },
        "per_day": [
            {
                "day": day,
                "asked": n,
                "answered": len(per_day.get(day, [])),
                **_spread(per_day.get(day, [])),
            }
            for day, n in sorted(asked_per_day.items())
        ],
    }


def _spread(seconds: list[float]) -> dict[str, float]:
    """Total, mean, median and longest of some waits, in seconds (0 when there are none)."""
    if not seconds:
        return {
            "total_seconds": 0.0,
            "mean_seconds": 0.0,
            "median_seconds": 0.0,
            "max_seconds": 0.0,
        }
    return {
        "total_seconds": round(sum(seconds), 3),
        "mean_seconds": round(statistics.fmean(seconds), 3),
        "median_seconds": round(statistics.median(seconds), 3),
        "max_seconds": round(max(seconds), 3),
    }
