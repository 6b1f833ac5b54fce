"""The state store's status changes: compare-and-set updates written with their log lines.

Only core.lifecycle calls these (it owns the transition tables); each one changes a row only
when its current status is in `allowed_from` (None: any), in the same transaction as the log
lines it is given, and returns the changed row with the stored lines so the caller can publish.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from core.errors import NotFoundError, TransitionError
from core.records import (
    FINISHED_RUN_STATUSES,
    Execution,
    Intervention,
    LogRecord,
    Phase,
    PhaseStatus,
    Run,
    RunStatus,
)
from core.state import schema
from core.state.db import StateDatabase
from core.state.schema import dumps
from core.timeutil import utcnow

FINISHED_PHASES = ("completed", "failed", "skipped")
# A log line as the store takes it: (run_id, phase_id, level, message[, ts]).
Line = tuple[Any, ...]


@dataclass(frozen=True)
class ClosedRun:
    """What `close_run` changed: the run, and every phase, attempt and question it closed."""

    run: Run
    phases: list[Phase] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    interventions: list[Intervention] = field(default_factory=list)
    lines: list[LogRecord] = field(default_factory=list)


class TransitionsMixin(StateDatabase):
    """Compare-and-set status changes of runs, phases, executions and interventions."""

    async def move_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        allowed_from: Collection[str] | None,
        error: str | None = None,
        outcome: dict[str, Any] | None = None,
        clear_lease: bool = False,
        lines: Sequence[Line] = (),
    ) -> tuple[Run, list[LogRecord]]:
        """Move a run to `status`; `outcome` (the final word's facts) is kept in its metadata."""
        async with self._write() as db:
            stored = await self._insert_lines(db, lines)  # on SQLite: in the UPDATE's hop
            self._last_step(db, if_rows=True)
            row = await self._move_run(
                db, run_id, status, allowed_from, error, outcome, clear_lease
            )
            return schema.run_from_row(row), stored()

    async def _move_run(
        self,
        db: aiosqlite.Connection,
        run_id: str,
        status: RunStatus,
        allowed_from: Collection[str] | None,
        error: str | None,
        outcome: dict[str, Any] | None,
        clear_lease: bool,
        owner: str | None = None,
    ) -> Any:
        now = utcnow()
        finished = status in FINISHED_RUN_STATUSES
        guard, guard_params = _guard(allowed_from)
        taken = ""
        if owner is not None:  # only while this (dead) process still holds the lease
            guard, guard_params = guard + " AND lease_owner = ?", (*guard_params, owner)
            taken = (
                ", lease_token = lease_token + 1"  # fences that process off (core.state.fencing)
            )
        sql = (
            "UPDATE runs SET status = ?, error = ?, updated_at = ?,"
            " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
            " completed_at = CASE WHEN ? THEN ? ELSE NULL END,"
            " metadata = CASE WHEN ? IS NOT NULL THEN json_set(COALESCE(metadata, '{}'),"
            " '$.outcome', json(?)) ELSE json_remove(COALESCE(metadata, '{}'), '$.outcome') END"
            + (", lease_owner = NULL, lease_expires_at = NULL" if clear_lease else "")
            + taken
            + f" WHERE id = ?{guard} RETURNING *"
        )
        encoded = None if outcome is None else dumps(outcome)
        params = (
            status.value,
            error,
            now,
            status not in (RunStatus.PENDING, RunStatus.INTERRUPTED),
            now,
            finished or status is RunStatus.INTERRUPTED,
            now,
            encoded,
            encoded,
            run_id,
            *guard_params,
        )
        rows = list(await db.execute_fetchall(sql, params))
        if not rows:
            await self._refuse(db, "runs", "run", run_id, status)
        return rows[0]

    async def move_phase(
        self,
        phase_id: str,
        status: PhaseStatus,
        *,
        allowed_from: Collection[str] | None,
        error: str | None = None,
        commit: str | None = None,
        base_commit: str | None = None,
        branch: str | None = None,
        worktree: str | Path | None = None,
        lines: Sequence[Line] = (),
        steps: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> tuple[Phase, list[LogRecord]]:
        """Move a phase to `status`; `commit` records its commit; git fields are kept once set;
        `steps` (rows that belong with the change, e.g. core.state.logs.artifact_steps) are
        written in the same transaction."""
        now = utcnow()
        guard, guard_params = _guard(allowed_from)
        async with self._write() as db:
            for sql, params in steps:
                await self._soon(db, sql, params)
            stored = await self._insert_lines(db, lines)  # on SQLite: in the UPDATE's hop
            self._last_step(db, if_rows=True)
            rows = list(
                await db.execute_fetchall(
                    "UPDATE phases SET status = ?, error = ?, commit_sha = COALESCE(?, commit_sha),"
                    " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
                    " completed_at = CASE WHEN ? THEN ? ELSE NULL END,"
                    " base_commit = COALESCE(base_commit, ?), branch = COALESCE(branch, ?),"
                    f" worktree = COALESCE(worktree, ?) WHERE id = ?{guard} RETURNING *",
                    (
                        status.value,
                        error,
                        commit,
                        status == PhaseStatus.IN_PROGRESS,
                        now,
                        status.value in FINISHED_PHASES,
                        now,
                        base_commit,
                        branch,
                        None if worktree is None else str(worktree),
                        phase_id,
                        *guard_params,
                    ),
                )
            )
            if not rows:
                await self._refuse(db, "phases", "phase", phase_id, status)
            return schema.phase_from_row(rows[0]), stored()

    async def move_execution(
        self,
        execution_id: str,
        status: str,
        *,
        allowed_from: Collection[str] | None,
        error: str | None = None,
        output: str | None = None,
        context: str | None = None,
        lines: Sequence[Line] = (),
        steps: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> tuple[Execution, list[LogRecord]]:
        """Close an attempt with its outcome (succeeded or failed), with `steps` as move_phase."""
        guard, guard_params = _guard(allowed_from)
        async with self._write() as db:
            for sql, params in steps:
                await self._soon(db, sql, params)
            stored = await self._insert_lines(db, lines)  # on SQLite: in the UPDATE's hop
            self._last_step(db, if_rows=True)
            rows = list(
                await db.execute_fetchall(
                    "UPDATE executions SET status = ?, error = ?, output = COALESCE(?, output),"
                    f" context = COALESCE(?, context), completed_at = ? WHERE id = ?{guard}"
                    " RETURNING *",
                    (status, error, output, context, utcnow(), execution_id, *guard_params),
                )
            )
            if not rows:
                await self._refuse(db, "executions", "execution", execution_id, status)
            return schema.execution_from_row(rows[0]), stored()

    async def move_intervention(
        self,
        intervention_id: str,
        status: str,
        *,
        allowed_from: Collection[str] | None,
        note: str | None = None,
        lines: Sequence[Line] = (),
        answered_by: str | None = None,
    ) -> tuple[Intervention, list[LogRecord]]:
        """Answer (or withdraw) a question, recording who answered; TransitionError names its
        status when it was not pending."""
        guard, guard_params = _guard(allowed_from)
        async with self._write() as db:
            stored = await self._insert_lines(db, lines)  # on SQLite: in the UPDATE's hop
            self._last_step(db, if_rows=True)
            rows = list(
                await db.execute_fetchall(
                    "UPDATE manual_interventions SET status = ?, note = ?, resolved_at = ?,"
                    f" answered_by = ? WHERE id = ?{guard} RETURNING *",
                    (status, note, utcnow(), answered_by, intervention_id, *guard_params),
                )
            )
            if not rows:
                await self._refuse(
                    db, "manual_interventions", "intervention", intervention_id, status
                )
            return schema.intervention_from_row(rows[0]), stored()

    async def close_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        allowed_from: Collection[str] | None,
        error: str | None,
        outcome: dict[str, Any] | None,
        phases_to: PhaseStatus,
        attempt_error: str,
        withdraw: bool,
        clear_lease: bool = False,
        owner: str | None = None,
        lines_for: Callable[[ClosedRun], Sequence[Line]] = lambda _: (),
    ) -> ClosedRun:
        """End a run in one transaction: its running attempts fail with `attempt_error`, its
        in-progress phases move to `phases_to`, its pending questions are withdrawn when
        `withdraw`, and the run takes `status`; `lines_for` words the log lines of what changed.
        With `owner`, the run changes only while that lease owner still holds it."""
        now = utcnow()
        async with self._write() as db:
            run_row = await self._move_run(
                db, run_id, status, allowed_from, error, outcome, clear_lease, owner
            )
            executions = [
                schema.execution_from_row(r)
                for r in await db.execute_fetchall(
                    "UPDATE executions SET status = 'failed', error = ?, completed_at = ?"
                    " WHERE run_id = ? AND status = 'running' RETURNING *",
                    (attempt_error, now, run_id),
                )
            ]
            finished = phases_to.value in FINISHED_PHASES
            phases = [
                schema.phase_from_row(r)
                for r in await db.execute_fetchall(
                    "UPDATE phases SET status = ?,"
                    " error = CASE WHEN ? THEN ? ELSE error END,"
                    " completed_at = CASE WHEN ? THEN ? ELSE NULL END"
                    " WHERE run_id = ? AND status = 'in_progress' RETURNING *",
                    (phases_to.value, finished, error, finished, now, run_id),
                )
            ]
            interventions = []
            if withdraw:
                interventions = [
                    schema.intervention_from_row(r)
                    for r in await db.execute_fetchall(
                        "UPDATE manual_interventions SET status = 'withdrawn', note = ?,"
                        " resolved_at = ? WHERE run_id = ? AND status = 'pending' RETURNING *",
                        (f"withdrawn: the run {status.value}", now, run_id),
                    )
                ]
            closed = ClosedRun(schema.run_from_row(run_row), phases, executions, interventions)
            stored = await self._insert_lines(db, lines_for(closed))  # SQLite: with the COMMIT
        return ClosedRun(closed.run, phases, executions, interventions, stored())

    async def _refuse(
        self, db: aiosqlite.Connection, table: str, what: str, id_: str, status: object
    ) -> None:
        """Raise NotFoundError for a missing row, else TransitionError naming its status."""
        row = await self._one(db, f"SELECT status FROM {table} WHERE id = ?", (id_,))
        if row is None:
            raise NotFoundError(f"no {what} with id {id_!r} in {self.where}; check the id")
        raise TransitionError(
            f"{what} {id_} is {row[0]}; it cannot become {status}",
            current=str(row[0]),
        )


def _guard(allowed_from: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    """The `AND status IN (...)` clause (and its parameters) of a compare-and-set update."""
    if allowed_from is None:
        return "", ()
    values = tuple(str(s) for s in allowed_from)
    if not values:
        return " AND 0", ()
    return f" AND status IN ({', '.join('?' for _ in values)})", values
