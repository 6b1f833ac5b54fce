"""One query gathering everything recorded about a run, for documents rendered outside the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.records import (
    Artifact,
    Execution,
    Finding,
    Intervention,
    Phase,
    Run,
    RunAction,
    RunUsage,
)
from core.state.actions import ActionsMixin
from core.state.contexts import ContextsMixin
from core.state.findings import FindingsMixin
from core.state.logs import LogsMixin
from core.state.phases import PhasesMixin
from core.state.runs import RunsMixin
from core.state.usage import UsageMixin


@dataclass(frozen=True)
class RunSnapshot:
    """A run's rows as the store holds them; core.reports turns this into documents."""

    run: Run
    phases: list[Phase]
    executions: list[Execution]
    findings: list[Finding]
    interventions: list[Intervention]
    artifacts: list[Artifact]
    contexts: list[dict[str, Any]]
    usage_by_role: dict[str, dict[str, int]]
    usage: RunUsage
    findings_summary: dict[str, Any]
    actions: list[RunAction] = field(default_factory=list)  # who started, cancelled, ...


class SnapshotMixin(
    RunsMixin, PhasesMixin, FindingsMixin, LogsMixin, UsageMixin, ContextsMixin, ActionsMixin
):
    """The read that gathers a whole run; raises NotFoundError for an unknown run."""

    async def run_snapshot(self, run_id: str) -> RunSnapshot:
        """Everything recorded about a run, each part read by its own topic's query."""
        run = await self.get_run(run_id)
        return RunSnapshot(
            run=run,
            phases=await self.get_phases_for_run(run_id),
            executions=await self.get_executions(run_id),
            findings=await self.get_findings(run_id),
            interventions=await self.list_interventions(run_id=run_id),
            artifacts=await self.get_artifacts(run_id),
            contexts=await self.get_contexts(run_id),
            usage_by_role=await self.usage_by_role(run_id),
            usage=await self.run_usage(run_id),
            findings_summary=await self.get_findings_summary(run_id),
            actions=await self.get_actions(run_id),
        )
