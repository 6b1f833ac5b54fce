"""The state store's analytics: aggregates over runs, usage, attempts, findings and interventions.

Every figure is grouped in SQL (days are `substr(ts, 1, 10)` of the ISO UTC timestamps, which
both SQLite and PostgreSQL accept); durations are left to Python over compact rows
(core/stats.py). Runs are filtered by creation time and repository; every other table is joined
to the runs that pass the filter, so the totals add up to the listing of the same runs.
"""

from __future__ import annotations

from typing import Any

from core.liveness import LOST_RUN
from core.records import AUTO_APPROVED_NOTE, StatsRows
from core.state.db import StateDatabase
from core.state.findings import OPEN_FINDING_STATUSES

# Finding statuses that count as open (core.state.findings), as an SQL list.
_OPEN = ", ".join(f"'{status}'" for status in OPEN_FINDING_STATUSES)
# The status a person sees: a run whose driving process is gone counts as interrupted.
_SEEN_STATUS = f"CASE WHEN {LOST_RUN} THEN 'interrupted' ELSE status END"


class StatsMixin(StateDatabase):
    """Grouped reads for `orchestrator stats` and the app's analytics section."""

    async def stats_rows(self, *, since: str | None = None, repo: str | None = None) -> StatsRows:
        """The grouped figures of runs created at or after `since` (an ISO date or timestamp) in
        repository `repo` (an absolute path as stored), both optional."""
        where, params = _run_filter(since, repo)
        params = {**params, **await self._liveness()}
        runs = f"(SELECT id FROM runs WHERE {where})"
        run_rows = await self._fetch(
            f"SELECT substr(created_at, 1, 10) AS day, {_SEEN_STATUS} AS st, COUNT(*) AS n"
            f" FROM runs WHERE {where} GROUP BY substr(created_at, 1, 10), {_SEEN_STATUS}"
            " ORDER BY day, st",
            params,
        )
        usage = await self._fetch(
            "SELECT substr(u.created_at, 1, 10) AS day, u.model AS model, u.role AS role,"
            " COUNT(*) AS calls,"
            " COALESCE(SUM(CASE WHEN u.cached = 0 THEN u.prompt_tokens ELSE 0 END), 0) AS p,"
            " COALESCE(SUM(CASE WHEN u.cached = 0 THEN u.completion_tokens ELSE 0 END), 0) AS c,"
            " COALESCE(SUM(CASE WHEN u.cached = 0 THEN u.cached_tokens ELSE 0 END), 0) AS k,"
            " COALESCE(SUM(u.cost_usd), 0) AS cost"
            f" FROM llm_usage u JOIN {runs} r ON r.id = u.run_id"
            " GROUP BY substr(u.created_at, 1, 10), u.model, u.role ORDER BY day, model, role",
            params,
        )
        # phases.attempts is the highest attempt started (the store raises it with each one).
        attempts = await self._fetch(
            "SELECT p.attempts AS tries, p.status AS st, COUNT(*) AS n"
            f" FROM phases p JOIN {runs} r ON r.id = p.run_id"
            " GROUP BY p.attempts, p.status ORDER BY tries, st",
            params,
        )
        findings = await self._fetch(
            "SELECT substr(f.created_at, 1, 10) AS day, f.severity AS sev, f.category AS cat,"
            f" CASE WHEN f.status IN ({_OPEN}) THEN 1 ELSE 0 END AS still_open, COUNT(*) AS n"
            f" FROM findings f JOIN {runs} r ON r.id = f.run_id WHERE f.status <> 'baseline'"
            " GROUP BY substr(f.created_at, 1, 10), f.severity, f.category,"
            f" CASE WHEN f.status IN ({_OPEN}) THEN 1 ELSE 0 END ORDER BY day, sev, cat",
            params,
        )
        waits = await self._fetch(
            "SELECT substr(i.created_at, 1, 10) AS day, i.kind AS kind, i.status AS st,"
            " i.created_at AS asked, i.resolved_at AS answered,"
            " CASE WHEN i.note = :auto_note THEN 1 ELSE 0 END AS auto"
            f" FROM manual_interventions i JOIN {runs} r ON r.id = i.run_id ORDER BY i.created_at",
            {**params, "auto_note": AUTO_APPROVED_NOTE},
        )
        # A check failed an attempt when it recorded a finding there (baseline ones were there
        # before the run); counted per attempt, so one noisy attempt weighs as much as one quiet.
        checks = await self._fetch(
            "SELECT f.category AS cat, f.tool AS tool,"
            " COUNT(DISTINCT COALESCE(f.execution_id, f.run_id)) AS tries, COUNT(*) AS n,"
            " SUM(CASE WHEN f.severity = 'major' THEN 1 ELSE 0 END) AS major"
            f" FROM findings f JOIN {runs} r ON r.id = f.run_id WHERE f.status <> 'baseline'"
            " GROUP BY f.category, f.tool ORDER BY tries DESC, n DESC, cat, tool",
            params,
        )
        # Findings by day, severity and category, and the open ones by severity, from one read.
        per_day: dict[tuple[str, str, str], int] = {}
        still_open: dict[str, int] = {}
        for r in findings:
            key = (r["day"], r["sev"], r["cat"])
            per_day[key] = per_day.get(key, 0) + int(r["n"])
            if r["still_open"]:
                still_open[r["sev"]] = still_open.get(r["sev"], 0) + int(r["n"])
        return StatsRows(
            runs=[(r["day"], r["st"], int(r["n"])) for r in run_rows],
            usage=[
                (
                    r["day"],
                    r["model"],
                    r["role"],
                    int(r["calls"]),
                    int(r["p"]),
                    int(r["c"]),
                    int(r["k"]),
                    float(r["cost"]),
                )
                for r in usage
            ],
            attempts=[(int(r["tries"]), r["st"], int(r["n"])) for r in attempts],
            findings=[(*key, n) for key, n in per_day.items()],
            open_findings=sorted(still_open.items()),
            waits=[
                (r["day"], r["kind"], r["st"], r["asked"], r["answered"], bool(r["auto"]))
                for r in waits
            ],
            checks=[
                (r["cat"], r["tool"], int(r["tries"]), int(r["n"]), int(r["major"] or 0))
                for r in checks
            ],
            phases=(
                sum(int(r["n"]) for r in attempts),
                sum(int(r["n"]) for r in attempts if r["st"] == "completed"),
            ),
        )


def _run_filter(since: str | None, repo: str | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause over `runs` for the filters given (only those given, so no untyped NULL
    parameters reach a server that must infer their type) and its parameters."""
    clauses, params = ["1 = 1"], {}
    if since is not None:
        clauses.append("created_at >= :since")
        params["since"] = since
    if repo is not None:
        clauses.append("repo = :repo")
        params["repo"] = repo
    return " AND ".join(clauses), params
