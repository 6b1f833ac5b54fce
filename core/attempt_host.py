"""The engine's services to an agent executor during one attempt: permissions, usage, findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.context import RunContext
from core.events import FindingRecorded, UsageRecorded
from core.procenv import redact
from core.records import (
    Category,
    Execution,
    FindingIn,
    InterventionKind,
    InterventionStatus,
    Phase,
    Severity,
)

# The tool name of findings the engine itself records about an agent; verification never resolves them.
AGENT_WATCH_TOOL = "agent-watch"


class RunAttemptHost:
    """Implements core.executors.base.AttemptHost for one attempt of one phase."""

    def __init__(self, ctx: RunContext, phase: Phase, execution: Execution) -> None:
        self._ctx = ctx
        self._phase = phase
        self._execution = execution
        self.repo: Path = ctx.repo
        self.home: Path = ctx.paths.home

    async def ask_permission(
        self, key: str, reason: str, action_required: str, payload: dict[str, Any]
    ) -> bool:
        """An `agent_permission` intervention of this phase; the same key gets the same answer."""
        answer = await self._ctx.gate.decide(
            InterventionKind.AGENT_PERMISSION,
            phase_id=self._phase.id,
            key=key,
            reason=reason,
            action_required=action_required,
            payload=payload,
        )
        return answer.status is InterventionStatus.APPROVED

    async def record_usage(
        self,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cost_usd: float = 0.0,
        duration_ms: float = 0.0,
    ) -> None:
        ctx = self._ctx
        await ctx.store.record_usage(
            ctx.run_id,
            self._phase.id,
            self._execution.id,
            "executor",
            provider,
            model,
            prompt_tokens,
            completion_tokens,
            duration_ms,
            False,
            attempt=self._execution.attempt,
            cost_usd=cost_usd,
        )
        await ctx.emit(
            UsageRecorded(
                run_id=ctx.run_id,
                role="executor",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                phase_id=self._phase.id,
                provider=provider,
                model=model,
                cost_usd=cost_usd,
            )
        )

    async def report_finding(self, message: str, details: str) -> None:
        ctx = self._ctx
        finding = await ctx.store.add_finding(
            ctx.run_id,
            self._phase.id,
            self._execution.id,
            FindingIn(
                category=Category.SECURITY,
                severity=Severity.MAJOR,
                tool=AGENT_WATCH_TOOL,
                message=redact(message),
                details=redact(details),
                rule="change-outside-worktree",
            ),
        )
        await ctx.emit(
            FindingRecorded(
                run_id=ctx.run_id,
                finding_id=finding.id,
                phase_id=self._phase.id,
                severity=finding.severity,
                category=finding.category,
                message=finding.message,
            )
        )
        ctx.log(self._phase.id, f"major finding: {finding.message}", "error")
