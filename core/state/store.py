"""The only door to the orchestrator's SQLite database: typed reads and transactional writes.

One writer connection does every write inside `BEGIN IMMEDIATE` (serialised by an asyncio.Lock and
retried while another process holds the lock); a second, query-only connection serves reads, so a
reader never sees a half-written transaction. Rows come back as core.records dataclasses.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite

from core.errors import AlreadyAnsweredError, NotFoundError, StateError
from core.records import (
    FINISHED_RUN_STATUSES,
    Artifact,
    Category,
    Execution,
    ExecutionStatus,
    Finding,
    FindingIn,
    FindingStatus,
    Intervention,
    InterventionKind,
    InterventionStatus,
    LogRecord,
    Phase,
    PhaseStatus,
    Run,
    RunStatus,
    RunSummary,
    Severity,
    Usage,
)
from core.state import schema
from core.state.schema import dumps
from core.timeutil import new_id, parse_ts, utcnow

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
LOCK_RETRY_SECONDS = 30.0
OPEN_FINDING_STATUSES = (FindingStatus.NEW.value, FindingStatus.OPEN.value)
FINISHED_PHASE_STATUSES = frozenset(
    {PhaseStatus.COMPLETED, PhaseStatus.FAILED, PhaseStatus.SKIPPED}
)
LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# A log line for append_logs: (run_id, phase_id, level, message) or the same plus its timestamp.
LogLine = tuple[str, str | None, str, str] | tuple[str, str | None, str, str, str]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """True when SQLite refused because another connection holds the lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _fingerprint(f: FindingIn) -> str:
    """A stable id for a finding across runs: sha1 of tool|rule|path|message, 16 hex chars."""
    raw = "|".join(x or "" for x in (f.tool, f.rule, f.path, f.message))
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:16]


def _file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 hex of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def _restrict_modes(path: Path) -> None:
    """Make the database and its WAL/SHM files readable by the owner only."""
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            os.chmod(candidate, 0o600)


def _retry_locked(fn: Callable[[], T]) -> T:
    """Run a blocking SQLite step, retrying for a while if another process holds the lock."""
    deadline, delay = time.monotonic() + LOCK_RETRY_SECONDS, 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.25)


def _prepare(path: Path) -> None:
    """Create the file 0600, switch it to WAL and apply migrations in one IMMEDIATE transaction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch to WAL mode (got {mode})")
        _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            schema.migrate(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    _restrict_modes(path)


class StateStore:
    """Async access to runs, phases, executions, findings, interventions, logs, artifacts, usage."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        """Wrap two open connections; use `await StateStore.open(path)` instead."""
        self.path = path
        self._writer: aiosqlite.Connection | None = writer
        self._reader: aiosqlite.Connection | None = reader
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path) -> StateStore:
        """Open (creating and migrating if needed) the database at `path`."""
        path = Path(path).expanduser().absolute()
        try:
            await asyncio.to_thread(_prepare, path)
            writer = await cls._connect(path, query_only=False)
            reader = await cls._connect(path, query_only=True)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                f"cannot open state database {path}: {exc}; check the path and its permissions"
            ) from exc
        _restrict_modes(path)
        return cls(path, writer, reader)

    @staticmethod
    async def _connect(path: Path, query_only: bool) -> aiosqlite.Connection:
        """Open one connection in autocommit mode with the store's pragmas."""
        db = await aiosqlite.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        db.row_factory = sqlite3.Row
        for pragma in (
            f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
            "PRAGMA foreign_keys = ON",
            "PRAGMA synchronous = NORMAL",
            f"PRAGMA query_only = {'ON' if query_only else 'OFF'}",
        ):
            await db.execute(pragma)
        return db

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        async with self._lock:
            for db in (self._reader, self._writer):
                if db is not None:
                    await db.close()
            self._reader = self._writer = None

    async def __aenter__(self) -> Self:
        """Use the store as `async with await StateStore.open(p) as store`."""
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close on leaving the block."""
        await self.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _closed_error(self) -> StateError:
        """The error for use after close."""
        return StateError(f"state database {self.path} is closed; open the store again")

    async def _begin(self, db: aiosqlite.Connection) -> None:
        """BEGIN IMMEDIATE, retrying with backoff while another process holds the write lock."""
        deadline, delay = time.monotonic() + LOCK_RETRY_SECONDS, 0.005
        while True:
            try:
                await db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.25)

    @staticmethod
    async def _rollback(db: aiosqlite.Connection) -> None:
        """Roll back if a transaction is open; the statement is queued even if we are cancelled."""
        try:
            await db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One IMMEDIATE transaction on the writer: commit on success, roll back on any error."""
        async with self._lock:
            db = self._writer
            if db is None:
                raise self._closed_error()
            try:
                await self._begin(db)
            except sqlite3.Error as exc:
                raise StateError(f"cannot start a write on {self.path}: {exc}") from exc
            except BaseException:
                # Cancelled while BEGIN ran in the worker thread: never leave the lock held.
                await self._rollback(db)
                raise
            try:
                yield db
            except BaseException as exc:
                await self._rollback(db)
                if isinstance(exc, sqlite3.Error):
                    raise StateError(f"write to {self.path} failed: {exc}") from exc
                raise
            try:
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._rollback(db)
                raise StateError(f"commit to {self.path} failed: {exc}") from exc

    async def _fetch(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[sqlite3.Row]:
        """Run a read on the query-only connection."""
        db = self._reader
        if db is None:
            raise self._closed_error()
        try:
            return list(await db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StateError(f"read from {self.path} failed: {exc}") from exc

    @staticmethod
    async def _one(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
        """First row of a query on a given connection, or None."""
        rows = list(await db.execute_fetchall(sql, params))
        return rows[0] if rows else None

    async def _require(
        self, db: aiosqlite.Connection, table: str, what: str, id_: str
    ) -> sqlite3.Row:
        """The row with this id, or NotFoundError naming what was missing."""
        row = await self._one(db, f"SELECT * FROM {table} WHERE id = ?", (id_,))
        if row is None:
            hint = "`orchestrator runs` lists run ids" if what == "run" else "check the id"
            raise NotFoundError(f"no {what} with id {id_!r} in {self.path}; {hint}")
        return row

    async def _get(self, table: str, what: str, id_: str) -> sqlite3.Row:
        """Read one row by id on the reader, or raise NotFoundError."""
        rows = await self._fetch(f"SELECT * FROM {table} WHERE id = ?", (id_,))
        if not rows:
            hint = "`orchestrator runs` lists run ids" if what == "run" else "check the id"
            raise NotFoundError(f"no {what} with id {id_!r} in {self.path}; {hint}")
        return rows[0]

    # -- runs ------------------------------------------------------------------------------------

    async def create_run(
        self,
        task: str,
        repo: str | Path,
        config: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Insert a pending run; the repo path is stored absolute."""
        run_id, now = new_id("r"), utcnow()
        repo_abs = os.path.abspath(os.path.expanduser(str(repo)))
        async with self._write() as db:
            await db.execute(
                "INSERT INTO runs (id, task, repo, status, created_at, updated_at, config, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    task,
                    repo_abs,
                    RunStatus.PENDING.value,
                    now,
                    now,
                    dumps(config),
                    dumps(metadata or {}),
                ),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def update_run_status(
        self, run_id: str, status: RunStatus | str, error: str | None = None
    ) -> Run:
        """Move a run to `status`, stamping started_at once and completed_at on finishing."""
        status, now = RunStatus(status), utcnow()
        finished = status in FINISHED_RUN_STATUSES
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "UPDATE runs SET status = ?, error = ?, updated_at = ?,"
                " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
                " completed_at = CASE WHEN ? THEN ? ELSE NULL END WHERE id = ?",
                (status.value, error, now, status != RunStatus.PENDING, now, finished, now, run_id),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def set_run_git(
        self, run_id: str, base_commit: str | None, branch: str | None, worktree: str | Path | None
    ) -> Run:
        """Record the run's base commit, branch and worktree path."""
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "UPDATE runs SET base_commit = ?, branch = ?, worktree = ?, updated_at = ? WHERE id = ?",
                (
                    base_commit,
                    branch,
                    None if worktree is None else str(worktree),
                    utcnow(),
                    run_id,
                ),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def set_run_metadata(self, run_id: str, **kv: Any) -> Run:
        """Merge keys into the run's metadata JSON."""
        async with self._write() as db:
            row = await self._require(db, "runs", "run", run_id)
            merged = {**schema.run_from_row(row).metadata, **kv}
            await db.execute(
                "UPDATE runs SET metadata = ?, updated_at = ? WHERE id = ?",
                (dumps(merged), utcnow(), run_id),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def get_run(self, run_id: str) -> Run:
        """One run by id."""
        return schema.run_from_row(await self._get("runs", "run", run_id))

    async def list_runs(
        self, status: RunStatus | str | None = None, limit: int = 100, offset: int = 0
    ) -> list[RunSummary]:
        """Runs newest first with phase progress and open findings by severity, in one query."""
        open_ = "f.status IN ('new', 'open')"
        rows = await self._fetch(
            f"""SELECT r.*,
              (SELECT COUNT(*) FROM phases p WHERE p.run_id = r.id) AS n_phases,
              (SELECT COUNT(*) FROM phases p WHERE p.run_id = r.id AND p.status = 'completed')
                AS n_done,
              (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {open_}
                AND f.severity = 'major') AS n_major,
              (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {open_}
                AND f.severity = 'medium') AS n_medium,
              (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {open_}
                AND f.severity = 'minor') AS n_minor
            FROM (SELECT rowid AS rid, * FROM runs WHERE (:status IS NULL OR status = :status)
                  ORDER BY created_at DESC, rowid DESC LIMIT :limit OFFSET :offset) r
            ORDER BY r.created_at DESC, r.rid DESC""",
            {
                "status": None if status is None else RunStatus(status).value,
                "limit": limit,
                "offset": offset,
            },
        )
        return [
            RunSummary(
                run=schema.run_from_row(r),
                phases_total=r["n_phases"],
                phases_completed=r["n_done"],
                findings={"major": r["n_major"], "medium": r["n_medium"], "minor": r["n_minor"]},
            )
            for r in rows
        ]

    async def count_runs(self, status: RunStatus | str | None = None) -> int:
        """How many runs there are, optionally with one status."""
        value = None if status is None else RunStatus(status).value
        rows = await self._fetch(
            "SELECT COUNT(*) FROM runs WHERE (? IS NULL OR status = ?)", (value, value)
        )
        return int(rows[0][0])

    async def delete_run(self, run_id: str) -> None:
        """Delete a run and everything recorded for it (used by `clean`)."""
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            for table in ("events", "llm_usage"):
                await db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            await db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- leases and cancellation -----------------------------------------------------------------

    async def acquire_lease(self, run_id: str, owner: str, ttl_seconds: float) -> bool:
        """Take the run's heartbeat lease if it is free, ours already, or expired."""
        now = utcnow()
        expires = _later(now, ttl_seconds)
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            cur = await db.execute(
                "UPDATE runs SET lease_owner = ?, lease_expires_at = ? WHERE id = ? AND"
                " (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at IS NULL"
                "  OR lease_expires_at < ?)",
                (owner, expires, run_id, owner, now),
            )
            return cur.rowcount == 1

    async def renew_lease(self, run_id: str, owner: str, ttl_seconds: float) -> bool:
        """Extend the lease if `owner` still holds it; False means another process took it."""
        expires = _later(utcnow(), ttl_seconds)
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
                (expires, run_id, owner),
            )
            return cur.rowcount == 1

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        async with self._write() as db:
            await db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (run_id, owner),
            )

    async def get_recoverable_runs(self) -> list[Run]:
        """Runs marked interrupted, or active runs whose lease is missing or expired."""
        rows = await self._fetch(
            "SELECT * FROM runs WHERE status = 'interrupted' OR"
            " (status IN ('pending', 'planning', 'executing', 'waiting') AND"
            "  (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ?))"
            " ORDER BY created_at, rowid",
            (utcnow(),),
        )
        return [schema.run_from_row(r) for r in rows]

    async def request_cancel(self, run_id: str) -> None:
        """Flag the run so its executing process stops at the next checkpoint."""
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                (utcnow(), run_id),
            )

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether someone asked to cancel the run."""
        return bool((await self._get("runs", "run", run_id))["cancel_requested"])

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
                    "INSERT INTO phases (id, run_id, plan_id, seq, name, description, status,"
                    " dependencies, estimated_complexity, risk_level, verification_criteria,"
                    " attempts, max_attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?)",
                    [
                        (
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
                        for seq, p in enumerate(phases)
                    ],
                )
            rows = await db.execute_fetchall(
                "SELECT * FROM phases WHERE run_id = ? ORDER BY seq", (run_id,)
            )
            return [schema.phase_from_row(r) for r in rows]

    async def update_phase_status(
        self,
        phase_id: str,
        status: PhaseStatus | str,
        error: str | None = None,
        commit: str | None = None,
    ) -> Phase:
        """Move a phase to `status`; `commit` records the phase's commit SHA."""
        status, now = PhaseStatus(status), utcnow()
        async with self._write() as db:
            await self._require(db, "phases", "phase", phase_id)
            await db.execute(
                "UPDATE phases SET status = ?, error = ?, commit_sha = COALESCE(?, commit_sha),"
                " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
                " completed_at = CASE WHEN ? THEN ? ELSE NULL END WHERE id = ?",
                (
                    status.value,
                    error,
                    commit,
                    status == PhaseStatus.IN_PROGRESS,
                    now,
                    status in FINISHED_PHASE_STATUSES,
                    now,
                    phase_id,
                ),
            )
            return schema.phase_from_row(await self._require(db, "phases", "phase", phase_id))

    async def set_phase_git(
        self,
        phase_id: str,
        base_commit: str | None = None,
        branch: str | None = None,
        worktree: str | Path | None = None,
    ) -> Phase:
        """Record a phase's base commit, branch or worktree (None leaves a field unchanged)."""
        async with self._write() as db:
            await self._require(db, "phases", "phase", phase_id)
            await db.execute(
                "UPDATE phases SET base_commit = COALESCE(?, base_commit),"
                " branch = COALESCE(?, branch), worktree = COALESCE(?, worktree) WHERE id = ?",
                (base_commit, branch, None if worktree is None else str(worktree), phase_id),
            )
            return schema.phase_from_row(await self._require(db, "phases", "phase", phase_id))

    async def get_phase(self, phase_id: str) -> Phase:
        """One phase by id."""
        return schema.phase_from_row(await self._get("phases", "phase", phase_id))

    async def get_phases_for_run(self, run_id: str) -> list[Phase]:
        """A run's phases in plan order."""
        rows = await self._fetch("SELECT * FROM phases WHERE run_id = ? ORDER BY seq", (run_id,))
        return [schema.phase_from_row(r) for r in rows]

    # -- executions ------------------------------------------------------------------------------

    async def create_execution(
        self, phase_id: str, run_id: str, attempt: int | None = None
    ) -> Execution:
        """Start an attempt of a phase (next number when `attempt` is None) and count it on the phase."""
        exec_id, now = new_id("e"), utcnow()
        async with self._write() as db:
            phase = await self._require(db, "phases", "phase", phase_id)
            if phase["run_id"] != run_id:
                raise StateError(f"phase {phase_id} belongs to run {phase['run_id']}, not {run_id}")
            if attempt is None:
                row = await self._one(
                    db,
                    "SELECT COALESCE(MAX(attempt_number), 0) FROM executions WHERE phase_id = ?",
                    (phase_id,),
                )
                attempt = int(row[0] if row else 0) + 1
            await db.execute(
                "INSERT INTO executions (id, phase_id, run_id, attempt_number, status, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (exec_id, phase_id, run_id, attempt, ExecutionStatus.RUNNING.value, now),
            )
            await db.execute(
                "UPDATE phases SET attempts = MAX(attempts, ?) WHERE id = ?", (attempt, phase_id)
            )
            return schema.execution_from_row(
                await self._require(db, "executions", "execution", exec_id)
            )

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
            await self._require(db, "executions", "execution", execution_id)
            await db.execute(
                "UPDATE executions SET status = ?, error = ?, output = COALESCE(?, output),"
                " context = COALESCE(?, context), completed_at = ? WHERE id = ?",
                (status.value, error, output, context, utcnow(), execution_id),
            )
            return schema.execution_from_row(
                await self._require(db, "executions", "execution", execution_id)
            )

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
        """One execution by id."""
        return schema.execution_from_row(await self._get("executions", "execution", execution_id))

    async def get_executions(self, run_id: str, phase_id: str | None = None) -> list[Execution]:
        """A run's (or one phase's) attempts in the order they started."""
        rows = await self._fetch(
            "SELECT * FROM executions WHERE run_id = ? AND (? IS NULL OR phase_id = ?)"
            " ORDER BY started_at, rowid",
            (run_id, phase_id, phase_id),
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

    # -- findings --------------------------------------------------------------------------------

    async def add_findings(
        self,
        run_id: str,
        phase_id: str | None,
        execution_id: str | None,
        findings: Iterable[FindingIn],
        status: FindingStatus | str = FindingStatus.NEW,
    ) -> list[Finding]:
        """Store a verifier's findings in one transaction."""
        status, now = FindingStatus(status), utcnow()
        resolved = status == FindingStatus.RESOLVED
        rows = [
            (
                new_id("f"),
                run_id,
                phase_id,
                execution_id,
                Category(f.category).value,
                Severity(f.severity).value,
                f.tool,
                f.rule,
                f.path,
                f.line,
                f.column,
                f.message,
                f.fingerprint or _fingerprint(f),
                status.value,
                int(resolved),
                now,
                now if resolved else None,
            )
            for f in findings
        ]
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.executemany(
                "INSERT INTO findings (id, run_id, phase_id, execution_id, category, severity, tool,"
                " rule, path, line, col, message, fingerprint, status, resolved, created_at,"
                " resolved_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            out = []
            for row in rows:
                out.append(
                    schema.finding_from_row(await self._require(db, "findings", "finding", row[0]))
                )
            return out

    async def add_finding(
        self,
        run_id: str,
        phase_id: str | None,
        execution_id: str | None,
        f: FindingIn,
        status: FindingStatus | str = FindingStatus.NEW,
    ) -> Finding:
        """Store one finding."""
        return (await self.add_findings(run_id, phase_id, execution_id, [f], status))[0]

    async def update_finding_status(self, finding_id: str, status: FindingStatus | str) -> Finding:
        """Change a finding's status; resolved stamps resolved_at, others clear it."""
        status = FindingStatus(status)
        resolved = status == FindingStatus.RESOLVED
        async with self._write() as db:
            await self._require(db, "findings", "finding", finding_id)
            await db.execute(
                "UPDATE findings SET status = ?, resolved = ?, resolved_at = ? WHERE id = ?",
                (status.value, int(resolved), utcnow() if resolved else None, finding_id),
            )
            return schema.finding_from_row(
                await self._require(db, "findings", "finding", finding_id)
            )

    async def get_findings(
        self, run_id: str, phase_id: str | None = None, status: FindingStatus | str | None = None
    ) -> list[Finding]:
        """A run's findings, optionally of one phase or status, in the order they were stored."""
        value = None if status is None else FindingStatus(status).value
        rows = await self._fetch(
            "SELECT * FROM findings WHERE run_id = ? AND (? IS NULL OR phase_id = ?)"
            " AND (? IS NULL OR status = ?) ORDER BY created_at, rowid",
            (run_id, phase_id, phase_id, value, value),
        )
        return [schema.finding_from_row(r) for r in rows]

    async def get_findings_summary(self, run_id: str) -> dict[str, Any]:
        """Open (new/open) findings counted by severity and category, plus their total."""
        rows = await self._fetch(
            "SELECT severity, category, COUNT(*) AS n FROM findings WHERE run_id = ?"
            " AND status IN (?, ?) GROUP BY severity, category",
            (run_id, *OPEN_FINDING_STATUSES),
        )
        summary: dict[str, Any] = {s.value: 0 for s in Severity}
        by_category = {c.value: 0 for c in Category}
        for r in rows:
            summary[r["severity"]] = summary.get(r["severity"], 0) + r["n"]
            by_category[r["category"]] = by_category.get(r["category"], 0) + r["n"]
        summary["by_category"] = by_category
        summary["total_open"] = sum(r["n"] for r in rows)
        return summary

    # -- interventions ---------------------------------------------------------------------------

    async def create_intervention(
        self,
        run_id: str,
        phase_id: str | None,
        kind: InterventionKind | str,
        reason: str,
        action_required: str,
        payload: dict[str, Any] | None = None,
    ) -> Intervention:
        """Record a pending question for a person; it survives restarts until answered."""
        iid, kind = new_id("i"), InterventionKind(kind)
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "INSERT INTO manual_interventions (id, run_id, phase_id, kind, reason,"
                " action_required, status, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    iid,
                    run_id,
                    phase_id,
                    kind.value,
                    reason,
                    action_required,
                    InterventionStatus.PENDING.value,
                    dumps(payload or {}),
                    utcnow(),
                ),
            )
            return schema.intervention_from_row(
                await self._require(db, "manual_interventions", "intervention", iid)
            )

    async def resolve_intervention(
        self, intervention_id: str, approve: bool, note: str | None = None
    ) -> Intervention:
        """Approve or reject a pending intervention; the first answer wins, later ones raise."""
        status = InterventionStatus.APPROVED if approve else InterventionStatus.REJECTED
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE manual_interventions SET status = ?, note = ?, resolved_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (status.value, note, utcnow(), intervention_id),
            )
            row = await self._require(db, "manual_interventions", "intervention", intervention_id)
            if cur.rowcount == 0:
                raise AlreadyAnsweredError(
                    f"intervention {intervention_id} was already {row['status']}"
                )
            return schema.intervention_from_row(row)

    async def get_intervention(self, intervention_id: str) -> Intervention:
        """One intervention by id."""
        return schema.intervention_from_row(
            await self._get("manual_interventions", "intervention", intervention_id)
        )

    async def list_interventions(
        self, run_id: str | None = None, pending_only: bool = False
    ) -> list[Intervention]:
        """Interventions oldest first, optionally of one run or only the pending ones."""
        rows = await self._fetch(
            "SELECT * FROM manual_interventions WHERE (? IS NULL OR run_id = ?)"
            " AND (? = 0 OR status = 'pending') ORDER BY created_at, rowid",
            (run_id, run_id, int(pending_only)),
        )
        return [schema.intervention_from_row(r) for r in rows]

    # -- logs ------------------------------------------------------------------------------------

    async def append_logs(self, records: Sequence[LogLine]) -> list[LogRecord]:
        """Store log lines in one transaction; a 5th tuple item is the line's own timestamp."""
        if not records:
            return []
        now = utcnow()
        rows = [(r[0], r[1], r[4] if len(r) > 4 else now, r[2], r[3]) for r in records]
        async with self._write() as db:
            await db.executemany(
                "INSERT INTO events (run_id, phase_id, ts, level, message) VALUES (?,?,?,?,?)", rows
            )
            last = await self._one(db, "SELECT last_insert_rowid()", ())
            first = int(last[0]) - len(rows) + 1 if last else 1
        return [LogRecord(first + i, *row) for i, row in enumerate(rows)]

    async def get_logs(
        self,
        run_id: str,
        after_seq: int = 0,
        limit: int = 1000,
        level: str | None = None,
        contains: str | None = None,
    ) -> list[LogRecord]:
        """A run's log lines after `after_seq`; `level` keeps that level and above, `contains` is
        a case-insensitive substring."""
        levels: list[str] | None = None
        if level is not None:
            floor = LOG_LEVELS.get(level.lower())
            levels = (
                [name for name, n in LOG_LEVELS.items() if n >= floor]
                if floor is not None
                else [level]
            )
        pattern = None
        if contains:
            escaped = contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
        rows = await self._fetch(
            "SELECT * FROM events WHERE run_id = ? AND seq > ?"
            " AND (? IS NULL OR lower(level) IN (SELECT value FROM json_each(?)))"
            " AND (? IS NULL OR message LIKE ? ESCAPE '\\') ORDER BY seq LIMIT ?",
            (run_id, after_seq, levels and 1, dumps(levels or []), pattern, pattern, limit),
        )
        return [schema.log_from_row(r) for r in rows]

    async def count_logs(self, run_id: str) -> int:
        """How many log lines a run has."""
        rows = await self._fetch("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,))
        return int(rows[0][0])

    # -- artifacts -------------------------------------------------------------------------------

    async def add_artifact(
        self, run_id: str, phase_id: str | None, name: str, path: Path, type: str
    ) -> Artifact:
        """Register a file the run produced, with its size and sha256."""
        path = Path(path).absolute()
        try:
            size, digest = await asyncio.to_thread(_file_digest, path)
        except OSError as exc:
            raise StateError(f"cannot read artifact {path}: {exc}") from exc
        aid = new_id("a")
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "INSERT INTO artifacts (id, run_id, phase_id, name, path, type, size, hash,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (aid, run_id, phase_id, name, str(path), type, size, digest, utcnow()),
            )
            return schema.artifact_from_row(await self._require(db, "artifacts", "artifact", aid))

    async def get_artifacts(self, run_id: str) -> list[Artifact]:
        """A run's artifacts in the order they were registered."""
        rows = await self._fetch(
            "SELECT * FROM artifacts WHERE run_id = ? ORDER BY created_at, rowid", (run_id,)
        )
        return [schema.artifact_from_row(r) for r in rows]

    # -- LLM usage and cache ---------------------------------------------------------------------

    async def record_usage(
        self,
        run_id: str | None,
        phase_id: str | None,
        execution_id: str | None,
        role: str,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        duration_ms: float,
        cached: bool,
    ) -> None:
        """Add one model call to the token ledger."""
        async with self._write() as db:
            await db.execute(
                "INSERT INTO llm_usage (id, run_id, phase_id, execution_id, role, provider, model,"
                " prompt_tokens, completion_tokens, duration_ms, cached, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    new_id("u"),
                    run_id,
                    phase_id,
                    execution_id,
                    role,
                    provider,
                    model,
                    int(prompt_tokens),
                    int(completion_tokens),
                    float(duration_ms),
                    int(cached),
                    utcnow(),
                ),
            )

    async def usage_by_role(self, run_id: str) -> dict[str, dict[str, int]]:
        """Token totals and call counts per role for a run."""
        rows = await self._fetch(
            "SELECT role, SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c, COUNT(*) AS n"
            " FROM llm_usage WHERE run_id = ? GROUP BY role ORDER BY role",
            (run_id,),
        )
        return {
            r["role"]: {
                "prompt_tokens": int(r["p"]),
                "completion_tokens": int(r["c"]),
                "calls": int(r["n"]),
            }
            for r in rows
        }

    async def get_usage(self, run_id: str) -> list[Usage]:
        """Token totals per role, provider and model for a run."""
        rows = await self._fetch(
            "SELECT role, provider, model, SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c,"
            " COUNT(*) AS n FROM llm_usage WHERE run_id = ? GROUP BY role, provider, model"
            " ORDER BY role, provider, model",
            (run_id,),
        )
        return [
            Usage(r["role"], r["provider"], r["model"], int(r["p"]), int(r["c"]), int(r["n"]))
            for r in rows
        ]

    async def cache_get(self, key: str) -> str | None:
        """A cached model response by key, or None."""
        rows = await self._fetch("SELECT response FROM llm_cache WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    async def cache_put(self, key: str, value: str) -> None:
        """Store (or replace) a model response under key."""
        async with self._write() as db:
            await db.execute(
                "INSERT OR REPLACE INTO llm_cache (key, response, created_at) VALUES (?, ?, ?)",
                (key, value, utcnow()),
            )


def _later(now: str, seconds: float) -> str:
    """The utcnow()-formatted timestamp `seconds` after `now`."""
    return (
        (parse_ts(now) + timedelta(seconds=seconds))
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )
