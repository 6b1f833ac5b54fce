"""Events the engine publishes on the bus after persisting a change; frozen, past tense, per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from core.records import LogRecord


@dataclass(frozen=True)
class Event:
    """Base of every bus event; `is_state` says whether subscribers may never lose it."""

    run_id: str
    is_state: ClassVar[bool] = True


@dataclass(frozen=True)
class RunCreated(Event):
    """A run row was created for a task on a repository."""

    task: str
    repo: str


@dataclass(frozen=True)
class RunStatusChanged(Event):
    """A run moved to a new status (see core.records.RunStatus)."""

    status: str
    error: str | None = None


@dataclass(frozen=True)
class PlanCreated(Event):
    """The planner's phases were saved; ids are the store's phase ids in plan order."""

    phase_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PhaseStatusChanged(Event):
    """A phase moved to a new status (see core.records.PhaseStatus)."""

    phase_id: str
    plan_id: str
    status: str
    error: str | None = None


@dataclass(frozen=True)
class ExecutionStarted(Event):
    """An attempt of a phase began (an executions row with status running)."""

    phase_id: str
    execution_id: str
    attempt: int


@dataclass(frozen=True)
class ExecutionFinished(Event):
    """An attempt of a phase ended as succeeded or failed."""

    phase_id: str
    execution_id: str
    attempt: int
    status: str
    error: str | None = None


@dataclass(frozen=True)
class FindingRecorded(Event):
    """A verification finding was stored."""

    finding_id: str
    phase_id: str | None
    severity: str
    category: str
    message: str


@dataclass(frozen=True)
class VerificationCompleted(Event):
    """A verification finished and its findings are stored: of a phase attempt, or the run's
    baseline (phase_id and execution_id None). Counts are of what this verification reported."""

    phase_id: str | None
    execution_id: str | None
    findings: int
    blocking: int  # new major findings that fail the attempt
    by_severity: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class InterventionRequested(Event):
    """The run needs a person's decision; the intervention row is pending."""

    intervention_id: str
    phase_id: str | None
    kind: str
    reason: str


@dataclass(frozen=True)
class InterventionResolved(Event):
    """A pending intervention was approved or rejected."""

    intervention_id: str
    status: str
    note: str | None = None


@dataclass(frozen=True)
class ArtifactRecorded(Event):
    """A file produced by the run (summary, diff, report, log) was registered."""

    artifact_id: str
    name: str
    type: str


@dataclass(frozen=True)
class LogEmitted(Event):
    """A batch of log lines already stored in the events table; may be coalesced or dropped."""

    lines: tuple[LogRecord, ...] = ()
    is_state: ClassVar[bool] = False


@dataclass(frozen=True)
class UsageRecorded(Event):
    """A model call's token usage was recorded in the ledger."""

    role: str
    prompt_tokens: int
    completion_tokens: int
    phase_id: str | None = None
    provider: str = ""
    model: str = ""
    cost_usd: float = 0.0


def is_state_event(event: Event) -> bool:
    """True for events a subscriber must always receive (everything but LogEmitted)."""
    return event.is_state
