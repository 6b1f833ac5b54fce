"""What an editor sees of a run over ACP: the plan's entries, attempts as tool calls, the summary."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from acp import (
    plan_entry,
    start_tool_call,
    text_block,
    tool_content,
    update_plan,
    update_tool_call,
    update_user_message_text,
)
from acp.schema import (
    AgentPlanUpdate,
    PermissionOption,
    PlanEntryPriority,
    PlanEntryStatus,
    ToolCallProgress,
    ToolCallStart,
    ToolCallStatus,
    ToolCallUpdate,
    ToolKind,
    UserMessageChunk,
)

from core.final_word import final_word
from core.records import Intervention, Phase, PhaseStatus, Run

if TYPE_CHECKING:
    from core.budget import RaiseOffer

# ACP plan entries know three statuses; a phase that failed or was skipped is done (and says so).
_ENTRY_STATUS: dict[PhaseStatus, PlanEntryStatus] = {
    PhaseStatus.PENDING: "pending",
    PhaseStatus.IN_PROGRESS: "in_progress",
    PhaseStatus.COMPLETED: "completed",
    PhaseStatus.FAILED: "completed",
    PhaseStatus.SKIPPED: "completed",
}
_PRIORITY: dict[str, PlanEntryPriority] = {"high": "high", "medium": "medium", "low": "low"}
# The option ids of every permission request we send; the answer maps back through them.
APPROVE, REJECT = "approve", "reject"
_ASK_KINDS: dict[str, ToolKind] = {"execute": "execute", "edit": "edit", "delete": "delete"}


def plan_update(phases: list[Phase]) -> AgentPlanUpdate:
    """The whole plan as one ACP `plan` update (a client replaces its plan with each one)."""
    entries = []
    for p in phases:
        suffix = f" ({p.status})" if p.status in (PhaseStatus.FAILED, PhaseStatus.SKIPPED) else ""
        entries.append(
            plan_entry(
                f"{p.plan_id}: {p.name}{suffix}",
                priority=_PRIORITY.get(p.risk_level, "medium"),
                status=_ENTRY_STATUS[p.status],
            )
        )
    return update_plan(entries)


def user_prompt(task: str) -> UserMessageChunk:
    """The prompt that started a run, replayed when its session is loaded again."""
    return update_user_message_text(task)


def attempt_id(execution_id: str) -> str:
    return f"attempt-{execution_id}"


def ask_id(intervention_id: str) -> str:
    return f"ask-{intervention_id}"


def attempt_started(execution_id: str, phase: Phase | None, attempt: int) -> ToolCallStart:
    name = f"{phase.plan_id} attempt {attempt}: {phase.name}" if phase else f"attempt {attempt}"
    return start_tool_call(attempt_id(execution_id), name, kind="edit", status="in_progress")


def attempt_finished(execution_id: str, status: str, error: str | None) -> ToolCallProgress:
    content = [tool_content(text_block(error[:4000]))] if error else None
    return update_tool_call(
        attempt_id(execution_id),
        status="completed" if status == "succeeded" else "failed",
        content=content,
    )


def permission_request(
    item: Intervention, raises: list[RaiseOffer] | None = None
) -> tuple[ToolCallUpdate, list[PermissionOption]]:
    """A pending intervention as an ACP permission request: what is asked, approve or reject; a
    budget intervention offers its raised limits (`raises`) in place of a bare approve."""
    kind = _ASK_KINDS.get(str(item.payload.get("tool_kind")), "other")
    asked = item.action_required
    if raises:
        asked = (
            "pick a raised limit to continue, or reject to stop the run (another limit: "
            f"`orchestrator approve {item.id} --budget-usd N` or `--budget-tokens N`)"
        )
    tool_call = ToolCallUpdate(
        tool_call_id=ask_id(item.id),
        title=f"{item.kind}: {item.reason}",
        kind=kind,
        status="pending",
        content=[tool_content(text_block(asked))],
        raw_input={
            "intervention_id": item.id,
            "run_id": item.run_id,
            "kind": str(item.kind),
            "reason": item.reason,
        },
    )
    scope = str(item.payload.get("scope") or "run")
    who = "the run's" if scope == "run" else f"phase {scope}'s"
    options = [
        PermissionOption(
            option_id=offer.option_id,
            name=f"Raise {who} budget to {offer.describe()} ({offer.label})",
            kind="allow_once",
        )
        for offer in raises or ()
    ]
    if not raises:
        options.append(PermissionOption(option_id=APPROVE, name="Approve", kind="allow_once"))
    options.append(PermissionOption(option_id=REJECT, name="Reject", kind="reject_once"))
    return tool_call, options


def ask_started(tool_call: ToolCallUpdate) -> ToolCallStart:
    """The tool call a permission request is about, announced before the request itself."""
    return start_tool_call(
        tool_call.tool_call_id,
        tool_call.title or tool_call.tool_call_id,
        kind=tool_call.kind,
        status="pending",
        content=tool_call.content,
        raw_input=tool_call.raw_input,
    )


def ask_settled(intervention_id: str, status: str) -> ToolCallProgress:
    """The permission tool call once its intervention is answered (anywhere) or withdrawn."""
    done: ToolCallStatus = "completed" if status == "approved" else "failed"
    return update_tool_call(ask_id(intervention_id), status=done)


def summary_text(run: Run, doc: dict[str, Any]) -> str:
    """The run summed up for the editor: outcome and branch, phases, findings, cost, next step."""
    word = final_word(run)
    lines = [word.message + (f" (branch {run.branch})" if run.branch and not word.ok else "")]
    phases = doc.get("phases") or []
    if phases:
        lines.append(
            "phases: "
            + ", ".join(
                f"{p['plan_id']} {p['status']} ({p['attempts']} attempt"
                f"{'s' if p['attempts'] != 1 else ''})"
                for p in phases
            )
        )
    findings = doc.get("findings") or []
    if findings:
        by_status = Counter(str(f["status"]) for f in findings)
        by_severity = Counter(
            str(f["severity"]) for f in findings if f["status"] in ("new", "open")
        )
        open_part = "/".join(str(by_severity.get(s, 0)) for s in ("major", "medium", "minor"))
        lines.append(
            f"findings: {len(findings)} recorded ("
            + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
            + f"); open major/medium/minor: {open_part}"
        )
    else:
        lines.append("findings: none")
    total = (doc.get("usage_totals") or {}).get("run") or {}
    lines.append(
        f"cost: ${float(total.get('cost_usd') or 0):.4f} "
        f"({int(total.get('prompt_tokens') or 0)}+{int(total.get('completion_tokens') or 0)} "
        f"tokens in {int(total.get('calls') or 0)} model calls)"
    )
    if word.next_step:
        lines.append(f"next: {word.next_step}")
    return "\n".join(lines) + "\n"
