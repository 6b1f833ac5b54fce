"""`orchestrator stats`: analytics over stored runs as readable tables, or the JSON document."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.stats import parse_since, repo_filter

if TYPE_CHECKING:
    from core.engine import Engine

# Rows of the failing-checks table in the human output (the JSON has them all).
TOP_CHECKS = 10


def add_parser(sub: Any) -> None:
    """The `stats` subcommand's arguments."""
    p = sub.add_parser(
        "stats",
        help="analytics: runs per day by status, cost and tokens per day by model and role, "
        "attempts, findings, time waiting for a person, the checks that fail most",
    )
    p.add_argument(
        "--since",
        metavar="DATE",
        help="only runs created on or after DATE: YYYY-MM-DD (UTC), an ISO timestamp, or Nd "
        "for the last N days",
    )
    p.add_argument("--repo", metavar="PATH", help="only runs on this repository")
    p.add_argument("--json", action="store_true", help="the stable JSON document (README)")


async def stats_command(engine: Engine, args: argparse.Namespace) -> int:
    """Print the analytics of the runs the filters select."""
    since = None if args.since is None else parse_since(args.since, datetime.now(UTC).date())
    repo = None if args.repo is None else repo_filter(args.repo)
    doc = await engine.stats(since=since, repo=repo)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(render_stats(doc)))
    return 0


def render_stats(doc: dict[str, Any]) -> list[str]:
    """The document as plain-text tables, one section per figure."""
    t = doc["totals"]
    filters = doc["filters"]
    scope = "all runs" if not (filters["since"] or filters["repo"]) else "runs"
    if filters["since"]:
        scope += f" created since {filters['since']}"
    if filters["repo"]:
        scope += f" on {filters['repo']}"
    if not t["runs"]:
        return [
            f"no runs to count ({scope}); start one with `orchestrator run` or `orchestrator demo`"
        ]
    statuses = [s for s, n in t["runs_by_status"].items() if n]
    out = [
        f"Analytics of {scope} (days in UTC)",
        "",
        (
            f"runs {t['runs']} ({_pairs(t['runs_by_status'])})  phases {t['phases']} "
            f"({t['phases_completed']} completed)  attempts {t['attempts']}"
        ),
        (
            f"model calls {t['calls']}  tokens {t['tokens']:,} (prompt {t['prompt_tokens']:,}, "
            f"completion {t['completion_tokens']:,})  cost ${t['cost_usd']:.4f}"
        ),
        (
            f"findings {t['findings']} ({_pairs(t['findings_by_severity'])}; open "
            f"{_pairs(t['open_findings'])})  interventions {t['interventions']}"
        ),
    ]
    out += _table(
        "Runs per day by status",
        ["day", "runs", *statuses],
        [
            [d["day"], d["runs"], *(d["by_status"].get(s, 0) for s in statuses)]
            for d in doc["runs_per_day"]
        ],
    )
    out += _table(
        "Cost and tokens per day by model and role",
        ["day", "model", "role", "calls", "tokens", "cost $"],
        [
            [
                u["day"],
                u["model"],
                u["role"],
                u["calls"],
                f"{u['tokens']:,}",
                f"{u['cost_usd']:.4f}",
            ]
            for u in doc["usage_per_day"]
        ],
    )
    out += _table(
        "Attempts per phase",
        ["attempts", "phases", "by status"],
        [[a["attempts"], a["phases"], _pairs(a["by_status"])] for a in doc["attempts_per_phase"]],
    )
    out += _table(
        "Findings per day by severity and category",
        ["day", "findings", "major", "medium", "minor", "by category"],
        [
            [
                f["day"],
                f["findings"],
                *(f["by_severity"].get(s, 0) for s in ("major", "medium", "minor")),
                _pairs(f["by_category"]),
            ]
            for f in doc["findings_per_day"]
        ],
    )
    w = doc["waiting"]
    out += [
        "",
        "Waiting for a person",
        (
            f"  asked {w['asked']}, answered {w['answered']}, by --yes {w['auto_approved']}, "
            f"pending {w['pending']}, withdrawn {w['withdrawn']}; median {duration(w['median_seconds'])}, "
            f"mean {duration(w['mean_seconds'])}, longest {duration(w['max_seconds'])}, "
            f"in all {duration(w['total_seconds'])}"
        ),
    ]
    out += _table(
        "",
        ["kind", "answered", "median", "longest"],
        [
            [kind, k["answered"], duration(k["median_seconds"]), duration(k["max_seconds"])]
            for kind, k in w["by_kind"].items()
        ],
    )[1:]
    checks = doc["failing_checks"]
    out += _table(
        "Checks that fail most (attempts with a finding from the check)",
        ["tool", "category", "attempts", "findings", "major"],
        [
            [c["tool"], c["category"], c["attempts"], c["findings"], c["major"]]
            for c in checks[:TOP_CHECKS]
        ],
    )
    if len(checks) > TOP_CHECKS:
        out.append(f"  ... and {len(checks) - TOP_CHECKS} more (--json lists every check)")
    return out


def duration(seconds: float) -> str:
    """A wait as a person reads it: 45s, 12m, 3.5h, 2.0d."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _pairs(counts: dict[str, int]) -> str:
    """`completed 3, failed 1`: the non-zero counts of a mapping, or `none`."""
    shown = [f"{k} {n}" for k, n in counts.items() if n]
    return ", ".join(shown) if shown else "none"


def _table(title: str, header: list[str], rows: list[list[Any]]) -> list[str]:
    """A titled, left-aligned text table (numbers right-aligned); `(none)` when it has no rows."""
    lines = ["", title]
    if not rows:
        return [*lines, "  (none)"]
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(header))]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  " + "  ".join(parts).rstrip()

    return [*lines, line(header), *(line(r) for r in cells)]
