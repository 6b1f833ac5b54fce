"""A run document (core.reports.document) rendered as a human-friendly Markdown report."""

from __future__ import annotations

from typing import Any

from core.records import RISK_ORDER, Category, Severity


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
            "| Id | Phase | Kind | Status | Reason | Note | Answered by |",
            "|---|---|---|---|---|---|---|",
        ]
        plan_ids = {p["id"]: p["plan_id"] for p in doc["phases"]}
        out += [
            f"| {i['id']} | {_cell(plan_ids.get(i['phase_id'], i['phase_id']))} | {i['kind']} | "
            f"{i['status']} | "
            f"{_cell(i['reason'])} | {_cell(i['note'])} | {_cell(i.get('answered_by'))} |"
            for i in doc["interventions"]
        ]
        out.append("")
    if doc.get("actions"):
        out += ["## Who did what", "", "| When | Action | By | Detail |", "|---|---|---|---|"]
        out += [
            f"| {a['created_at'][:19]} | {a['action']} | {_cell(a['actor'])} | {_cell(a['detail'])} |"
            for a in doc["actions"]
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
