"""The one owner of status changes of runs, phases, executions (attempts) and interventions.

Every change is checked against the transition table of its entity (`RUN_MOVES`, `PHASE_MOVES`,
`EXECUTION_MOVES`, `INTERVENTION_MOVES`: status -> the statuses it may become), written by the
store as a compare-and-set in ONE transaction together with its log line (and the log lines the
journal still buffered, so the log keeps its order), and published on the bus after the commit.
A change the table does not allow raises TransitionError (a bug, never a user error).

API (all async; each returns the stored row):

    lc = Lifecycle(store, journal)                       # Engine.lifecycle, RunContext.lifecycle
    await lc.run_to(run_id, RunStatus.EXECUTING)         # planning, executing, waiting, ...
    await lc.phase_to(phase, PhaseStatus.COMPLETED, commit=sha)   # phase: the stored Phase
    await lc.start_execution(phase, context)             # a new attempt, `running`
    await lc.execution_to(execution, ExecutionStatus.FAILED, error="...")
    await lc.intervention_to(intervention_id, InterventionStatus.APPROVED, note="...")
    await lc.end_run(run_id, exc_or_status, error="...") # every way out of a run
    await lc.record_lost(run_id, lease_owner)            # its process is gone: interrupted

`end_run` closes a run truthfully in one transaction: final status and error text (from the
error tree, core/errors.py: cancelled, interrupted or failed), running attempts `failed` with
the reason, phases still `in_progress` `failed` (or `pending` again when the run is
`interrupted`), and pending interventions `withdrawn` when the run can no longer continue
(`cancelled`, `failed`, `completed`); an `interrupted` run keeps its questions. The facts the
final word needs (error type, exit code, whether resume can help) are stored with the run
(metadata "outcome", read by core.final_word).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.artifacts import StagedArtifact
from core.error_map import as_orchestrator_error
from core.errors import (
    AlreadyAnsweredError,
    ArtifactStoreError,
    DiskFullError,
    NeedsInputError,
    OrchestratorError,
    PushError,
    RunCancelled,
    TransitionError,
    WithdrawnError,
)
from core.events import (
    Event,
    ExecutionFinished,
    ExecutionStarted,
    InterventionResolved,
    PhaseStatusChanged,
    RunStatusChanged,
)
from core.journal import Journal
from core.records import (
    Execution,
    ExecutionStatus,
    Intervention,
    InterventionStatus,
    LogRecord,
    Phase,
    PhaseStatus,
    Run,
    RunStatus,
)
from core.state.contexts import PromptContext
from core.state.store import ClosedRun, LogLine, StateStore

R = RunStatus
RUN_MOVES: Mapping[RunStatus, frozenset[RunStatus]] = {
    R.PENDING: frozenset({R.PLANNING, R.EXECUTING, R.FAILED, R.CANCELLED, R.INTERRUPTED}),
    R.PLANNING: frozenset({R.EXECUTING, R.WAITING, R.FAILED, R.CANCELLED, R.INTERRUPTED}),
    R.EXECUTING: frozenset({R.WAITING, R.COMPLETED, R.FAILED, R.CANCELLED, R.INTERRUPTED}),
    R.WAITING: frozenset({R.PLANNING, R.EXECUTING, R.FAILED, R.CANCELLED, R.INTERRUPTED}),
    # resume continues an interrupted run; a failed one is reopened as interrupted first
    R.INTERRUPTED: frozenset({R.PLANNING, R.EXECUTING, R.FAILED, R.CANCELLED, R.INTERRUPTED}),
    R.FAILED: frozenset({R.INTERRUPTED}),
    R.COMPLETED: frozenset(),
    R.CANCELLED: frozenset(),
}
P = PhaseStatus
PHASE_MOVES: Mapping[PhaseStatus, frozenset[PhaseStatus]] = {
    P.PENDING: frozenset({P.IN_PROGRESS, P.SKIPPED, P.FAILED}),
    # in_progress -> in_progress: a resumed phase starts again on the stored base commit
    P.IN_PROGRESS: frozenset({P.IN_PROGRESS, P.COMPLETED, P.FAILED, P.PENDING}),
    P.COMPLETED: frozenset(),
    P.FAILED: frozenset(),
    P.SKIPPED: frozenset(),
}
E = ExecutionStatus
EXECUTION_MOVES: Mapping[ExecutionStatus, frozenset[ExecutionStatus]] = {
    E.RUNNING: frozenset({E.SUCCEEDED, E.FAILED}),
    # an attempt closed as interrupted whose commit is found on resume is adopted
    E.FAILED: frozenset({E.SUCCEEDED}),
    E.SUCCEEDED: frozenset(),
}
I = InterventionStatus
INTERVENTION_MOVES: Mapping[InterventionStatus, frozenset[InterventionStatus]] = {
    I.PENDING: frozenset({I.APPROVED, I.REJECTED, I.WITHDRAWN}),
    I.APPROVED: frozenset(),
    I.REJECTED: frozenset(),
    I.WITHDRAWN: frozenset(),
}

# Statuses in which nobody may answer a run's questions any more.
WITHDRAWING_RUN_STATUSES = frozenset({R.CANCELLED, R.FAILED, R.COMPLETED})
INTERRUPTED_ATTEMPT = "interrupted: the orchestrator stopped during this attempt"


def sources(table: Mapping[Any, frozenset[Any]], target: Any) -> list[str]:
    """The statuses that may become `target` under a transition table."""
    return [str(s) for s, targets in table.items() if target in targets]


@dataclass(frozen=True)
class Ending:
    """How a run ends for a given way out: status, stored error text and the final-word facts."""

    status: RunStatus
    error: str | None
    outcome: dict[str, Any]


def ending_of(run_id: str, way_out: BaseException | RunStatus, error: str | None = None) -> Ending:
    """The final status and stored facts of a run that ends with `way_out` (an exception, or
    COMPLETED/FAILED/CANCELLED/INTERRUPTED with `error` saying why)."""
    facts: dict[str, Any]
    if isinstance(way_out, RunStatus):
        facts = {
            "error_type": None,
            "exit_code": 0 if way_out is R.COMPLETED else 1,
            "resumable": way_out in (R.INTERRUPTED, R.FAILED),
        }
        return Ending(way_out, None if way_out is R.COMPLETED else error, facts)
    if isinstance(way_out, asyncio.CancelledError):
        text = error or "the orchestrator was stopped (a signal or a shutdown)"
        facts = {"error_type": "Interrupted", "exit_code": 1, "resumable": True}
        return Ending(R.INTERRUPTED, text, facts)
    exc = as_orchestrator_error(way_out)
    facts = {
        "error_type": type(exc).__name__,
        "exit_code": exc.exit_code,
        "resumable": exc.resumable,
    }
    if isinstance(exc, RunCancelled):
        return Ending(R.CANCELLED, error or str(exc) or "cancelled by the user", facts)
    if isinstance(exc, DiskFullError):
        where = exc.path or "the orchestrator's home folder"
        text = (
            str(exc)
            if exc.hinted  # core.diskfull.disk_full_error already names the place and next step
            else f"{exc}; free space in {where}, then `orchestrator resume {run_id}`"
        )
        return Ending(R.INTERRUPTED, error or text, {**facts, "path": where})
    if isinstance(exc, NeedsInputError | PushError):  # resumable once a person acted
        return Ending(R.INTERRUPTED, error or str(exc), facts)
    if isinstance(
        exc, ArtifactStoreError
    ):  # the bucket's outage, not the work's: resume redoes nothing
        return Ending(R.INTERRUPTED, error or f"{exc}; then `orchestrator resume {run_id}`", facts)
    return Ending(R.FAILED, error or str(exc) or type(exc).__name__, facts)


class Lifecycle:
    """Checks, writes (with the log line, in one transaction) and publishes status changes."""

    def __init__(self, store: StateStore, journal: Journal) -> None:
        self.store = store
        self.journal = journal

    # ---- runs ----------------------------------------------------------------------------------

    async def run_to(
        self, run_id: str, status: RunStatus, *, error: str | None = None, say: str | None = None
    ) -> Run:
        """Move a run to an intermediate status (planning, executing, waiting, interrupted)."""
        line = self.journal.line(
            run_id,
            None,
            "error" if error else "info",
            say or f"run {status}" + (f": {error}" if error else ""),
        )

        async def write(lines: list[LogLine]) -> tuple[Run, list[LogRecord]]:
            return await self.store.move_run(
                run_id,
                status,
                allowed_from=sources(RUN_MOVES, status),
                error=error,
                lines=[*lines, line],
            )

        return await self.journal.record(
            write, lambda run: [RunStatusChanged(run_id=run.id, status=str(status), error=error)]
        )

    async def end_run(
        self,
        run_id: str,
        way_out: BaseException | RunStatus,
        *,
        error: str | None = None,
        clear_lease: bool = False,
        owner: str | None = None,
    ) -> Run:
        """End a run for `way_out` and close everything it left open (see the module docstring);
        with `owner`, only while that lease owner still holds the run."""
        ending = ending_of(run_id, way_out, error)
        status = ending.status
        phases_to = P.PENDING if status is R.INTERRUPTED else P.FAILED
        attempt_error = (
            INTERRUPTED_ATTEMPT if status is R.INTERRUPTED else f"{status}: {ending.error}"
        )
        journal = self.journal
        level = "info" if status is R.COMPLETED else "error"

        def lines_for(closed: ClosedRun) -> list[LogLine]:
            out = [
                journal.line(
                    run_id, e.phase_id, "warning", f"attempt {e.attempt} closed: {e.error}"
                )
                for e in closed.executions
            ]
            out += [
                journal.line(run_id, p.id, "warning", f"phase {p.plan_id} {p.status}")
                for p in closed.phases
            ]
            out += [
                journal.line(run_id, i.phase_id, "warning", f"intervention {i.id} withdrawn")
                for i in closed.interventions
            ]
            text = f"run {status}" + (f": {ending.error}" if ending.error else "")
            out.append(journal.line(run_id, None, level, text))
            return out

        async def write(buffered: list[LogLine]) -> tuple[ClosedRun, list[LogRecord]]:
            closed = await self.store.close_run(
                run_id,
                status,
                allowed_from=sources(RUN_MOVES, status),
                error=ending.error,
                outcome={"status": str(status), **ending.outcome},
                phases_to=phases_to,
                attempt_error=attempt_error,
                withdraw=status in WITHDRAWING_RUN_STATUSES,
                clear_lease=clear_lease,
                owner=owner,
                lines_for=lambda closed: [*buffered, *lines_for(closed)],
            )
            return closed, closed.lines

        def events(closed: ClosedRun) -> list[Event]:
            out: list[Event] = [
                ExecutionFinished(
                    run_id=run_id,
                    phase_id=e.phase_id,
                    execution_id=e.id,
                    attempt=e.attempt,
                    status=str(e.status),
                    error=e.error,
                )
                for e in closed.executions
            ]
            out += [
                PhaseStatusChanged(
                    run_id=run_id,
                    phase_id=p.id,
                    plan_id=p.plan_id,
                    status=str(p.status),
                    error=p.error if p.status is P.FAILED else None,
                )
                for p in closed.phases
            ]
            out += [
                InterventionResolved(
                    run_id=run_id, intervention_id=i.id, status=str(i.status), note=i.note
                )
                for i in closed.interventions
            ]
            out.append(RunStatusChanged(run_id=run_id, status=str(status), error=ending.error))
            return out

        return (await self.journal.record(write, events)).run

    async def close_leftovers(self, run: Run) -> Run:
        """Close what a live process opened after another process ended `run` first (an attempt
        it started meanwhile); the run keeps the status, error and outcome that process stored."""
        status = run.status
        closed = await self.store.close_run(
            run.id,
            status,
            allowed_from=(str(status),),
            error=run.error,
            outcome=run.metadata.get("outcome"),
            phases_to=P.PENDING if status is R.INTERRUPTED else P.FAILED,
            attempt_error=INTERRUPTED_ATTEMPT
            if status is R.INTERRUPTED
            else f"{status}: {run.error}",
            withdraw=status in WITHDRAWING_RUN_STATUSES,
        )
        return closed.run

    async def record_lost(self, run_id: str, owner: str | None, *, clear_lease: bool = True) -> Run:
        """Record a run whose driving process `owner` is gone (dead pid, expired lease) as
        interrupted; with clear_lease (another process records it) only while `owner` still
        holds the lease, so a run resumed meanwhile is left alone (TransitionError)."""
        who = f" ({owner})" if owner else ""
        error = f"interrupted: the process driving it{who} stopped without recording an end"
        return await self.end_run(
            run_id,
            R.INTERRUPTED,
            error=error,
            clear_lease=clear_lease,
            owner=owner if clear_lease else None,
        )

    # ---- phases --------------------------------------------------------------------------------

    async def phase_to(
        self,
        phase: Phase,
        status: PhaseStatus,
        *,
        error: str | None = None,
        commit: str | None = None,
        base_commit: str | None = None,
        branch: str | None = None,
        worktree: str | Path | None = None,
        artifacts: Sequence[StagedArtifact] = (),
    ) -> Phase:
        """Move a phase to `status` (git fields are recorded once, the commit when it completes),
        storing the rows of `artifacts` in the same write and announcing them first."""
        text = f"phase {phase.plan_id} {status}" + (f": {error[:300]}" if error else "")
        line = self.journal.line(phase.run_id, phase.id, "info", text)

        async def write(lines: list[LogLine]) -> tuple[Phase, list[LogRecord]]:
            return await self.store.move_phase(
                phase.id,
                status,
                allowed_from=sources(PHASE_MOVES, status),
                error=error,
                commit=commit,
                base_commit=base_commit,
                branch=branch,
                worktree=worktree,
                lines=[*lines, line],
                steps=[step for a in artifacts for step in a.steps],
            )

        def events(row: Phase) -> list[Event]:
            return [
                *(a.event() for a in artifacts),
                PhaseStatusChanged(
                    run_id=row.run_id,
                    phase_id=row.id,
                    plan_id=row.plan_id,
                    status=str(status),
                    error=error,
                ),
            ]

        return await self.journal.record(write, events)

    # ---- executions ----------------------------------------------------------------------------

    async def start_execution(
        self, phase: Phase, context: PromptContext | None = None
    ) -> Execution:
        """Create the next attempt of a phase as `running` (with the context retrieved for its
        prompt, in the same write) and announce it."""
        execution = await self.store.create_execution(phase.id, phase.run_id, context=context)
        await self.journal.emit(
            ExecutionStarted(
                run_id=phase.run_id,
                phase_id=phase.id,
                execution_id=execution.id,
                attempt=execution.attempt,
            )
        )
        return execution

    async def execution_to(
        self,
        execution: Execution,
        status: ExecutionStatus,
        *,
        error: str | None = None,
        output: str | None = None,
        context: str | None = None,
        say: str | None = None,
        level: str = "info",
        artifacts: Sequence[StagedArtifact] = (),
    ) -> Execution:
        """Close an attempt as succeeded or failed; `say` words its log line; the rows of
        `artifacts` (its verification report) are stored in the same write, announced first."""
        text = say or f"attempt {execution.attempt} {status}" + (f": {error}" if error else "")
        line = self.journal.line(execution.run_id, execution.phase_id, level, text)

        async def write(lines: list[LogLine]) -> tuple[Execution, list[LogRecord]]:
            return await self.store.move_execution(
                execution.id,
                str(status),
                allowed_from=sources(EXECUTION_MOVES, status),
                error=error,
                output=output,
                context=context,
                lines=[*lines, line],
                steps=[step for a in artifacts for step in a.steps],
            )

        def events(row: Execution) -> list[Event]:
            return [
                *(a.event() for a in artifacts),
                ExecutionFinished(
                    run_id=row.run_id,
                    phase_id=row.phase_id,
                    execution_id=row.id,
                    attempt=row.attempt,
                    status=str(status),
                    error=error,
                ),
            ]

        return await self.journal.record(write, events)

    # ---- interventions -------------------------------------------------------------------------

    async def intervention_to(
        self,
        intervention_id: str,
        status: InterventionStatus,
        *,
        note: str | None = None,
        answered_by: str | None = None,
    ) -> Intervention:
        """Answer a pending question (approved/rejected, by `answered_by`) or withdraw it; an
        answer to one that is no longer pending raises AlreadyAnsweredError, or WithdrawnError
        when its run ended."""
        item = await self.store.get_intervention(intervention_id)
        by = f" by {answered_by}" if answered_by else ""
        text = f"intervention {item.id} {status}{by}" + (f" ({note})" if note else "")
        line = self.journal.line(item.run_id, item.phase_id, "info", text)

        async def write(lines: list[LogLine]) -> tuple[Intervention, list[LogRecord]]:
            return await self.store.move_intervention(
                intervention_id,
                str(status),
                allowed_from=sources(INTERVENTION_MOVES, status),
                note=note,
                lines=[*lines, line],
                answered_by=answered_by,
            )

        def events(row: Intervention) -> list[Event]:
            return [
                InterventionResolved(
                    run_id=row.run_id, intervention_id=row.id, status=str(status), note=note
                )
            ]

        try:
            return await self.journal.record(write, events)
        except TransitionError as exc:
            raise _not_pending(item, exc.current) from None


def _not_pending(item: Intervention, current: str | None) -> OrchestratorError:
    """The user-facing error for answering a question that is no longer pending."""
    if current == I.WITHDRAWN:
        return WithdrawnError(
            f"intervention {item.id} was withdrawn: its run {item.run_id} ended before an "
            f"answer, so there is nothing to approve or reject (see `orchestrator show {item.run_id}`)"
        )
    return AlreadyAnsweredError(f"intervention {item.id} was already {current}")
