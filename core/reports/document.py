"""A run as one stable JSON document: the `show --json` / `export --format json` contract."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from core.actors import STARTED_BY
from core.git.remote_url import is_url
from core.liveness import last_worker_owner, lease_overdue, owner_pid, worker_name
from core.records import Run, RunUsage, UsageTotals
from core.timeutil import parse_ts, utcnow

if TYPE_CHECKING:
    from core.state.snapshot import RunSnapshot
    from core.state.store import StateStore


def _duration(started: str | None, completed: str | None) -> float | None:
    """Seconds between two stored timestamps, or None when either is missing."""
    if not started or not completed:
        return None
    return round((parse_ts(completed) - parse_ts(started)).total_seconds(), 3)


async def run_document(store: StateStore, run_id: str) -> dict[str, Any]:
    """Everything recorded about a run as plain JSON-ready data; raises NotFoundError."""
    return document_of(await store.run_snapshot(run_id))


def document_of(snap: RunSnapshot) -> dict[str, Any]:
    """The JSON document of a run snapshot (field order is part of the contract)."""
    run = snap.run
    return {
        "id": run.id,
        "task": run.task,
        "repo": run.repo if is_url(run.repo) else os.path.abspath(run.repo),
        "status": run.status.value,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "duration_seconds": _duration(run.started_at, run.completed_at),
        "error": run.error,
        "base_commit": run.base_commit,
        "branch": run.branch,
        **holder_fields(run),
        "phases": [
            {
                "id": p.id,
                "plan_id": p.plan_id,
                "name": p.name,
                "description": p.description,
                "status": p.status.value,
                "dependencies": list(p.dependencies),
                "estimated_complexity": p.estimated_complexity,
                "risk_level": p.risk_level,
                "verification_criteria": list(p.verification_criteria),
                "attempts": int(p.attempts),
                "commit": p.commit,
                "started_at": p.started_at,
                "completed_at": p.completed_at,
                "duration_seconds": _duration(p.started_at, p.completed_at),
                "error": p.error,
            }
            for p in snap.phases
        ],
        "executions": [
            {
                "id": e.id,
                "phase_id": e.phase_id,
                "attempt": e.attempt,
                "status": e.status.value,
                "error": e.error,
                "started_at": e.started_at,
                "completed_at": e.completed_at,
            }
            for e in snap.executions
        ],
        # What each prompt was shown from the repository (the planner's has no execution).
        "contexts": [
            {
                "purpose": c["purpose"],
                "execution_id": c["execution_id"],
                "query": c["query"],
                "chars": len(c["text"]),
                "sources": c["sources"],
            }
            for c in snap.contexts
        ],
        "findings": [
            {
                "id": f.id,
                "phase_id": f.phase_id,
                "execution_id": f.execution_id,
                "category": f.category,
                "severity": f.severity,
                "tool": f.tool,
                "rule": f.rule,
                "path": f.path,
                "line": f.line,
                "column": f.column,
                "message": f.message,
                "fingerprint": f.fingerprint,
                "status": f.status.value,
                "location": f.location,
                "created_at": f.created_at,
                "resolved_at": f.resolved_at,
                "end_line": f.end_line,
                "end_column": f.end_column,
                "snippet": f.snippet,
                "details": f.details,
                "help_url": f.help_url,
            }
            for f in snap.findings
        ],
        "interventions": [
            {
                "id": i.id,
                "run_id": i.run_id,
                "phase_id": i.phase_id,
                "kind": i.kind.value,
                "reason": i.reason,
                "status": i.status.value,
                "note": i.note,
                "created_at": i.created_at,
                "resolved_at": i.resolved_at,
                "answered_by": i.answered_by,
            }
            for i in snap.interventions
        ],
        # Who gave each command that changed the run (answers are on their interventions).
        "actions": _started(snap)
        + [
            {
                "action": a.action,
                "actor": a.actor,
                "os_user": a.os_user,
                "git_name": a.git_name,
                "detail": a.detail,
                "created_at": a.created_at,
            }
            for a in snap.actions
        ],
        "artifacts": [
            {"name": a.name, "path": a.path, "type": a.type, "size": a.size, "hash": a.hash}
            for a in snap.artifacts
        ],
        "usage": snap.usage_by_role,
        "usage_totals": _usage_totals(snap.usage),
        "findings_summary": snap.findings_summary,
    }


def holder_fields(run: Run) -> dict[str, Any]:
    """Whether a run waits for a worker and who holds it: `queued` (submitted for a worker),
    `lease_owner` ("host:pid:..." of the process driving it, None when nobody does), `worker`
    (that process's worker id, when a worker drives it), when the lease runs out,
    `lease_overdue` (true when it ran out but that process still lives on this machine: its
    heartbeat is late, the run goes on), and `last_worker` (the id of the last worker that
    claimed it, kept after its lease is released)."""
    expires = run.lease_expires_at if run.lease_owner else None
    overdue = not run.lost and lease_overdue(run.lease_owner, expires, utcnow())
    return {
        "queued": run.queued,
        "lease_owner": run.lease_owner,
        "worker": worker_name(run.lease_owner),
        "lease_expires_at": expires,
        "lease_overdue": overdue,
        "owner_pid": owner_pid(run.lease_owner) if run.lease_owner else None,
        "last_worker": worker_name(last_worker_owner(run.metadata)),
    }


def _started(snap: RunSnapshot) -> list[dict[str, Any]]:
    """Who started the run (kept in its metadata by Engine.create_run), as the first action."""
    by = snap.run.metadata.get(STARTED_BY)
    if not isinstance(by, dict) or not by.get("name"):
        return []
    return [
        {
            "action": "started",
            "actor": by["name"],
            "os_user": by.get("os_user"),
            "git_name": by.get("git_name"),
            "detail": None,
            "created_at": snap.run.created_at,
        }
    ]


def _totals_json(totals: UsageTotals) -> dict[str, Any]:
    return {
        "calls": totals.calls,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "cached_tokens": totals.cached_tokens,
        "total_tokens": totals.total_tokens,
        "cost_usd": round(totals.cost_usd, 6),
        "duration_seconds": round(totals.duration_ms / 1000.0, 3),
    }


def _usage_totals(usage: RunUsage) -> dict[str, Any]:
    """The ledger's totals per run, for planning and per phase (by plan id)."""
    return {
        "run": _totals_json(usage.total),
        "planning": _totals_json(usage.planning),
        "phases": {plan_id: _totals_json(t) for plan_id, t in usage.phases.items()},
    }
