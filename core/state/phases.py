"""The state store's phases and executions: the saved plan and every attempt of a phase."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from core.errors import NotFoundError, StateError
from core.liveness import LOST_RUN_OF
from core.records import Execution, ExecutionStatus, Phase, PhaseStatus
from core.state import schema
from core.state.contexts import CONTEXT_COLUMNS, PromptContext, context_row
from core.state.db import StateDatabase
from core.state.schema import dumps
from core.timeutil import new_id, utcnow

FINISHED_PHASE_STATUSES = frozenset(
    {PhaseStatus.COMPLETED, PhaseStatus.FAILED, PhaseStatus.SKIPPED}
)


class PhasesMixin(StateDatabase):
    """Reads and writes of the phases and executions tables."""

    # -- phases ----------------------------------------------------------------------------------

    async def save_plan(
        self, run_id: str, phases: list[dict[str, Any]], max_attempts: int
    ) -> list[Phase]:
        """Store the planner's phases in order in one transaction; a second call returns the first plan."""
        now = utcnow()
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            existing = await self._one(db, "SELECT 1 FROM phases WHERE run_id = ?", (run_id,))
            if existing is None:
                await db.executemany(
                    _INSERT_PHASE,
                    [_phase_row(run_id, seq, p, max_attempts, now) for seq, p in enumerate(phases)],
                )
            rows = await db.execute_fetchall(
                "SELECT * FROM phases WHERE run_id = ? ORDER BY seq", (run_id,)
            )
            return [schema.phase_from_row(r) for r in rows]

    async def create_phase(
        self, run_id: str, phase_data: dict[str, Any], max_attempts: int = 3
    ) -> Phase:
        """Add one phase after the run's others (the seed's create_phase); plan ids are unique per run."""
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            row = await self._one(
                db, "SELECT COALESCE(MAX(seq) + 1, 0) FROM phases WHERE run_id = ?", (run_id,)
            )
            seq = int(row[0]) if row else 0
            try:
                rows = list(
                    await db.execute_fetchall(
                        _INSERT_PHASE + " RETURNING *",
                        _phase_row(run_id, seq, phase_data, max_attempts, utcnow()),
                    )
                )
            except sqlite3.IntegrityError as exc:
                raise StateError(
                    f"run {run_id} already has a phase with plan id {phase_data.get('id')!r}"
                ) from exc
            return schema.phase_from_row(rows[0])

    async def update_phase_status(
        self,
        phase_id: str,
        status: PhaseStatus | str,
        error: str | None = None,
        commit: str | None = None,
        *,
        base_commit: str | None = None,
        branch: str | None = None,
        worktree: str | Path | None = None,
    ) -> Phase:
        """Move a phase to `status`; `commit` records its commit; git fields are kept once set."""
        status, now = PhaseStatus(status), utcnow()
        async with self._write() as db:
            row = await self._update_one(
                db,
                "phase",
                phase_id,
                "UPDATE phases SET status = ?, error = ?, commit_sha = COALESCE(?, commit_sha),"
                " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
                " completed_at = CASE WHEN ? THEN ? ELSE NULL END,"
                " base_commit = COALESCE(base_commit, ?), branch = COALESCE(branch, ?),"
                " worktree = COALESCE(worktree, ?) WHERE id = ?",
                (
                    status.value,
                    error,
                    commit,
                    status == PhaseStatus.IN_PROGRESS,
                    now,
                    status in FINISHED_PHASE_STATUSES,
                    now,
                    base_commit,
                    branch,
                    None if worktree is None else str(worktree),
                    phase_id,
                ),
            )
            return schema.phase_from_row(row)

    async def get_phase(self, phase_id: str) -> Phase:
        """One phase by id (as reads see it: core.liveness)."""
        rows = await self._fetch(
            f"SELECT p.*, {_SEEN_PHASE} FROM phases p WHERE p.id = :id",
            {**await self._liveness(), "id": phase_id},
        )
        if not rows:
            raise NotFoundError(f"no phase with id {phase_id!r} in {self.where}; check the id")
        return schema.phase_from_row(rows[0])

    async def get_phases_for_run(self, run_id: str) -> list[Phase]:
        """A run's phases in plan order; a phase in progress of a lost run reads as pending."""
        rows = await self._fetch(
            f"SELECT p.*, {_SEEN_PHASE} FROM phases p WHERE p.run_id = :run ORDER BY p.seq",
            {**await self._liveness(), "run": run_id},
        )
        return [schema.phase_from_row(r) for r in rows]

    # -- executions ------------------------------------------------------------------------------

    async def create_execution(
        self,
        phase_id: str,
        run_id: str,
        attempt: int | None = None,
        *,
        context: PromptContext | None = None,
    ) -> Execution:
        """Start an attempt of a phase (next number when `attempt` is None) and count it on the
        phase, with the context retrieved for its prompt when given: one write, one hop to the
        writer thread on SQLite."""
        exec_id, now = new_id("e"), utcnow()
        # The attempt's number: the one given, else one after the phase's last (both statements
        # see the executions as they were before the INSERT, so they agree).
        number = (
            "COALESCE(?, (SELECT COALESCE(MAX(attempt_number), 0) FROM executions"
            " WHERE phase_id = ?) + 1)"
        )
        update = (
            f"UPDATE phases SET attempts = MAX(attempts, {number}) WHERE id = ? AND run_id = ?",
            (attempt, phase_id, phase_id, run_id),
        )
        insert_sql = (
            "INSERT INTO executions (id, phase_id, run_id, attempt_number, status, started_at)"
            f" SELECT ?, id, run_id, {number}, ?, ? FROM phases WHERE id = ? AND run_id = ?"
        )
        insert = (
            insert_sql,
            (exec_id, attempt, phase_id, ExecutionStatus.RUNNING.value, now, phase_id, run_id),
        )
        if context is None:
            steps = [update, (insert_sql + " RETURNING *", insert[1])]
        else:
            row = context_row(new_id(), run_id, exec_id, "execute", context)
            steps = [
                update,
                insert,
                (  # only when the attempt was inserted (its id is the context's reference)
                    (
                        f"INSERT INTO contexts ({CONTEXT_COLUMNS})"
                        f" SELECT {', '.join('?' * len(row))} FROM executions WHERE id = ?"
                    ),
                    (*row, exec_id),
                ),
                ("SELECT * FROM executions WHERE id = ?", (exec_id,)),
            ]
        rows = await self._write_batch(steps)
        if not rows:
            owner = await self._fetch("SELECT run_id FROM phases WHERE id = ?", (phase_id,))
            if not owner:
                raise NotFoundError(f"no phase with id {phase_id!r} in {self.where}; check the id")
            raise StateError(f"phase {phase_id} belongs to run {owner[0][0]}, not {run_id}")
        return schema.execution_from_row(rows[0])

    async def _finish_execution(
        self,
        execution_id: str,
        status: ExecutionStatus,
        error: str | None,
        output: str | None,
        context: str | None,
    ) -> Execution:
        """Close an execution row with its outcome."""
        async with self._write() as db:
            row = await self._update_one(
                db,
                "execution",
                execution_id,
                "UPDATE executions SET status = ?, error = ?, output = COALESCE(?, output),"
                " context = COALESCE(?, context), completed_at = ? WHERE id = ?",
                (status.value, error, output, context, utcnow(), execution_id),
            )
            return schema.execution_from_row(row)

    async def complete_execution(
        self, execution_id: str, output: str | None, context: str | None = None
    ) -> Execution:
        """Mark an attempt succeeded with the agent's output."""
        return await self._finish_execution(
            execution_id, ExecutionStatus.SUCCEEDED, None, output, context
        )

    async def fail_execution(
        self, execution_id: str, error: str, output: str | None = None, context: str | None = None
    ) -> Execution:
        """Mark an attempt failed with the reason."""
        return await self._finish_execution(
            execution_id, ExecutionStatus.FAILED, error, output, context
        )

    async def get_execution(self, execution_id: str) -> Execution:
        """One execution by id (as reads see it: core.liveness)."""
        rows = await self._fetch(
            f"SELECT e.*, {_SEEN_EXECUTION} FROM executions e WHERE e.id = :id",
            {**await self._liveness(), "id": execution_id},
        )
        if not rows:
            raise NotFoundError(
                f"no execution with id {execution_id!r} in {self.where}; check the id"
            )
        return schema.execution_from_row(rows[0])

    async def get_executions(self, run_id: str, phase_id: str | None = None) -> list[Execution]:
        """A run's (or one phase's) attempts in the order they started; a running attempt of a
        lost run reads as failed (interrupted)."""
        rows = await self._fetch(
            f"SELECT e.*, {_SEEN_EXECUTION} FROM executions e WHERE e.run_id = :run"
            " AND (:phase IS NULL OR e.phase_id = :phase) ORDER BY e.started_at, e.rowid",
            {**await self._liveness(), "run": run_id, "phase": phase_id},
        )
        return [schema.execution_from_row(r) for r in rows]

    async def fail_running_executions(self, run_id: str, error: str) -> int:
        """Mark attempts left running by a dead process as failed; returns how many (resume)."""
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE executions SET status = 'failed', error = ?, completed_at = ?"
                " WHERE run_id = ? AND status = 'running'",
                (error, utcnow(), run_id),
            )
            return cur.rowcount


_SEEN_PHASE = (
    f"CASE WHEN p.status = 'in_progress' AND {LOST_RUN_OF.format(alias='p')} THEN 'pending'"
    " ELSE p.status END AS seen_status"
)
_SEEN_EXECUTION = (
    f"CASE WHEN e.status = 'running' AND {LOST_RUN_OF.format(alias='e')} THEN 'failed'"
    " ELSE e.status END AS seen_status,"
    f" CASE WHEN e.status = 'running' AND {LOST_RUN_OF.format(alias='e')}"
    " THEN 'interrupted: the orchestrator stopped during this attempt' ELSE e.error END"
    " AS seen_error"
)

_INSERT_PHASE = (
    "INSERT INTO phases (id, run_id, plan_id, seq, name, description, status,"
    " dependencies, estimated_complexity, risk_level, verification_criteria,"
    " attempts, max_attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?)"
)


def _phase_row(
    run_id: str, seq: int, p: dict[str, Any], max_attempts: int, now: str
) -> tuple[Any, ...]:
    """The INSERT parameters of one planned phase (a dict with the plan JSON's keys)."""
    return (
        new_id("p"),
        run_id,
        str(p["id"]),
        seq,
        p.get("name", p["id"]),
        p.get("description", ""),
        PhaseStatus.PENDING.value,
        dumps(list(p.get("dependencies") or [])),
        str(p.get("estimated_complexity") or "medium"),
        str(p.get("risk_level") or "low"),
        dumps(list(p.get("verification_criteria") or [])),
        max_attempts,
        now,
    )
