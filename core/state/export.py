"""A run as one stable JSON document (the `export --format json` contract) and as Markdown."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from core.records import RISK_ORDER, Category, RunUsage, Severity, UsageTotals
from core.timeutil import parse_ts

if TYPE_CHECKING:
    from core.state.store import StateStore


def _duration(started: str | None, completed: str | None) -> float | None:
    """Seconds between two stored timestamps, or None when either is missing."""
    if not started or not completed:
        return None
    return round((parse_ts(completed) - parse_ts(started)).total_seconds(), 3)


async def run_document(store: StateStore, run_id: str) -> dict[str, Any]:
    """Everything recorded about a run as plain JSON-ready data; raises NotFoundError."""
    run = await store.get_run(run_id)
    phases = await store.get_phases_for_run(run_id)
    executions = await store.get_executions(run_id)
    findings = await store.get_findings(run_id)
    interventions = await store.list_interventions(run_id=run_id)
    artifacts = await store.get_artifacts(run_id)
    contexts = await store.get_contexts(run_id)
    return {
        "id": run.id,
        "task": run.task,
        "repo": os.path.abspath(run.repo),
        "status": run.status.value,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "completed_at": run.completed_at,
        "duration_seconds": _duration(run.started_at, run.completed_at),
        "error": run.error,
        "base_commit": run.base_commit,
        "branch": run.branch,
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
            for p in phases
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
            for e in executions
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
            for c in contexts
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
            for f in findings
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
            }
            for i in interventions
        ],
        "artifacts": [
            {"name": a.name, "path": a.path, "type": a.type, "size": a.size, "hash": a.hash}
            for a in artifacts
        ],
        "usage": await store.usage_by_role(run_id),
        "usage_totals": _usage_totals(await store.run_usage(run_id)),
        "findings_summary": await store.get_findings_summary(run_id),
    }


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


def _usage_section(doc: dict[str, Any]) -> list[str]:
    """Tokens and cost per phase and for the whole run."""
    totals = doc.get("usage_totals") or {}
    run = totals.get("run") or {}
    if not run.get("calls"):
        return []
    out = [
        "## Tokens and cost",
        "",
        "| Scope | Calls | Prompt tokens | Completion tokens | Cached | Cost (USD) |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("planning", totals["planning"])] if totals["planning"]["calls"] else []
    rows += list(totals["phases"].items())
    rows.append(("**run total**", run))
    for scope, t in rows:
        out.append(
            f"| {_cell(scope)} | {t['calls']} | {t['prompt_tokens']} | {t['completion_tokens']} | "
            f"{t['cached_tokens']} | {t['cost_usd']:.4f} |"
        )
    return [*out, ""]


def _cell(value: Any) -> str:
    """A value made safe for one Markdown table cell."""
    if value is None or value == "":
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _secs(value: float | None) -> str:
    """A duration as 1h 2m 3s / 2m 3s / 4.5s, or '-'."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {seconds}s" if hours else f"{minutes}m {seconds}s"


def _plan_section(doc: dict[str, Any]) -> list[str]:
    """The plan as a numbered list with dependencies, risk and verification criteria."""
    out = ["## Plan", ""]
    if not doc["phases"]:
        return [*out, "No plan was made.", ""]
    for n, p in enumerate(doc["phases"], 1):
        deps = ", ".join(p["dependencies"]) or "none"
        out.append(
            f"{n}. **{p['plan_id']}: {p['name']}** (risk {p['risk_level']}, "
            f"complexity {p['estimated_complexity']}, depends on {deps})"
        )
        if p["description"]:
            out.append(f"   {p['description']}")
        for criterion in p["verification_criteria"]:
            out.append(f"   - [ ] {criterion}")
    high = [p["plan_id"] for p in doc["phases"] if RISK_ORDER.get(p["risk_level"], 0) >= 2]
    if high:
        out += ["", f"High-risk phases: {', '.join(high)}."]
    return [*out, ""]


def _phases_section(doc: dict[str, Any]) -> list[str]:
    """The phases table with status, attempts, duration and commit."""
    if not doc["phases"]:
        return []
    out = [
        "## Phases",
        "",
        "| Phase | Status | Attempts | Duration | Commit | Error |",
        "|---|---|---|---|---|---|",
    ]
    for p in doc["phases"]:
        commit = f"`{p['commit'][:12]}`" if p["commit"] else "-"
        error = (p["error"] or "").splitlines()[0][:120] if p["error"] else None
        out.append(
            f"| {_cell(p['plan_id'] + ' ' + p['name'])} | {p['status']} | {p['attempts']} | "
            f"{_secs(p['duration_seconds'])} | {commit} | {_cell(error)} |"
        )
    commits = [(p["plan_id"], p["commit"]) for p in doc["phases"] if p["commit"]]
    if commits:
        out += ["", "### Commits", ""]
        out += [f"- {plan_id}: `{sha}`" for plan_id, sha in commits]
    return [*out, ""]


def _findings_table(doc: dict[str, Any]) -> list[str]:
    """Open findings counted by severity (rows) and category (columns), then the baseline's count."""
    open_ones = [f for f in doc["findings"] if f["status"] in ("new", "open")]
    categories = [c.value for c in Category]
    out = [
        "| Severity | " + " | ".join(categories) + " | Total |",
        "|---|" + "---|" * (len(categories) + 1),
    ]
    for severity in Severity:
        row = [f for f in open_ones if f["severity"] == severity.value]
        counts = [sum(1 for f in row if f["category"] == c) for c in categories]
        out.append(f"| {severity.value} | " + " | ".join(map(str, counts)) + f" | {len(row)} |")
    totals = [sum(1 for f in open_ones if f["category"] == c) for c in categories]
    out.append("| **total** | " + " | ".join(map(str, totals)) + f" | {len(open_ones)} |")
    baseline = [f for f in doc["findings"] if f["status"] == "baseline"]
    resolved = [f for f in doc["findings"] if f["status"] == "resolved"]
    out += [
        "",
        (
            f"Resolved during the run: {len(resolved)}. Baseline (already at the base commit, "
            f"not counted against thresholds): {len(baseline)}."
        ),
        "",
    ]
    return out


def _findings_section(doc: dict[str, Any]) -> list[str]:
    """A table of open findings by severity and category, then the findings, most severe first."""
    summary = doc["findings_summary"]
    out = [
        "## Findings",
        "",
        (
            f"Open: {summary['total_open']} ({summary['major']} major, {summary['medium']} medium, "
            f"{summary['minor']} minor); {len(doc['findings'])} recorded in total."
        ),
        "",
    ]
    if doc["findings"]:
        out += _findings_table(doc)
    for severity in Severity:
        group = [f for f in doc["findings"] if f["severity"] == severity.value]
        if not group:
            continue
        out += [f"### {severity.value.capitalize()} ({len(group)})", ""]
        for f in group:
            where = f" `{f['location']}`" if f["location"] else ""
            rule = f" {f['rule']}" if f["rule"] else ""
            first = f["message"].splitlines()[0] if f["message"] else ""
            out.append(f"- [{f['status']}] {f['category']}/{f['tool']}{rule}{where}: {first}")
        out.append("")
    return out


def render_markdown(doc: dict[str, Any]) -> str:
    """A human-friendly report of a run document made by run_document()."""
    out = [
        f"# Run {doc['id']}: {doc['status']}",
        "",
        f"**Task:** {doc['task']}",
        "",
        f"- Repository: `{doc['repo']}`",
        f"- Status: **{doc['status']}**" + (f" ({doc['error']})" if doc["error"] else ""),
        f"- Created: {doc['created_at']}",
        f"- Started: {doc['started_at'] or '-'}",
        f"- Completed: {doc['completed_at'] or '-'}",
        f"- Duration: {_secs(doc.get('duration_seconds'))}",
    ]
    if doc["branch"]:
        out.append(f"- Branch: `{doc['branch']}` (base `{(doc['base_commit'] or '-')[:12]}`)")
    out.append("")
    out += _plan_section(doc)
    out += _phases_section(doc)
    out += _findings_section(doc)
    if doc["interventions"]:
        out += [
            "## Interventions",
            "",
            "| Id | Phase | Kind | Status | Reason | Note |",
            "|---|---|---|---|---|---|",
        ]
        plan_ids = {p["id"]: p["plan_id"] for p in doc["phases"]}
        out += [
            f"| {i['id']} | {_cell(plan_ids.get(i['phase_id'], i['phase_id']))} | {i['kind']} | "
            f"{i['status']} | "
            f"{_cell(i['reason'])} | {_cell(i['note'])} |"
            for i in doc["interventions"]
        ]
        out.append("")
    if doc["usage"]:
        out += [
            "## Token usage",
            "",
            "| Role | Calls | Prompt tokens | Completion tokens |",
            "|---|---|---|---|",
        ]
        for role, u in doc["usage"].items():
            out.append(
                f"| {role} | {u['calls']} | {u['prompt_tokens']} | {u['completion_tokens']} |"
            )
        total_p = sum(u["prompt_tokens"] for u in doc["usage"].values())
        total_c = sum(u["completion_tokens"] for u in doc["usage"].values())
        out += [
            (
                f"| **total** | {sum(u['calls'] for u in doc['usage'].values())} | {total_p} | "
                f"{total_c} |"
            ),
            "",
        ]
    out += _usage_section(doc)
    if doc["artifacts"]:
        out += ["## Artifacts", ""]
        out += [
            f"- {a['name']} ({a['type']}, {a['size']} bytes): `{a['path']}`"
            for a in doc["artifacts"]
        ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
