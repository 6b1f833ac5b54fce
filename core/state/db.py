"""The state database's plumbing: opening and migrating it, its connections, the write helper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast
from urllib.parse import quote

import aiosqlite

from config.dburl import is_postgres_url, mask_url
from core.diskfull import disk_full_error, is_disk_full
from core.errors import (
    ConfigError,
    DamagedDatabaseError,
    NotFoundError,
    OrchestratorError,
    ReadOnlyHomeError,
    StateError,
)
from core.liveness import OWNER_GONE, OWNER_LIVES, owner_gone, owner_lives
from core.records import LogRecord
from core.state import schema
from core.state.fencing import (
    FRESH_CONFIRMATION_SECONDS,
    Fence,
    check_fence,
    check_fence_now,
    current_fence,
    fresh_lines,
)
from core.state.sqlite_writer import SqliteWriter, WriteTransaction
from core.state.wal_copy import copy_with_wal, has_wal_content
from core.timeutil import utcnow

if TYPE_CHECKING:
    from core.state.pg import PgBackend

T = TypeVar("T")
# 5 parameters a line, under SQLite's limit of variables (32766 since 3.32, 999 before).
_LINES_PER_INSERT = 1000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 190
BUSY_TIMEOUT_MS = 10_000
LOCK_RETRY_SECONDS = 30.0
# A PASSIVE checkpoint after this many committed writes moves the WAL into the database file
# during a run (the automatic one waits for 1000 pages, so a whole run could live in the WAL).
CHECKPOINT_EVERY_WRITES = 100
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_READONLY_CODE = 8


def is_damaged(exc: BaseException) -> bool:
    """Whether SQLite said the file is not a (whole) database: truncated, garbage, corrupt."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and int(code) & 0xFF in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def state_error(path: Path, action: str, exc: BaseException) -> OrchestratorError:
    """The error for a failed database step: disk full, damaged file, read-only, or plain."""
    if is_disk_full(exc):
        return disk_full_error(exc, [path.parent])
    if is_damaged(exc):
        return DamagedDatabaseError(
            f"the state database {path} is damaged ({exc}): the file is truncated or overwritten. "
            "Run `orchestrator doctor --fix` to recover what it holds into a new file "
            "(the damaged one is kept beside it)"
        )
    code = getattr(exc, "sqlite_errorcode", None)
    if (code is not None and int(code) & 0xFF == _READONLY_CODE) or "readonly" in str(exc).lower():
        return ReadOnlyHomeError(
            f"cannot write to the state database {path}: it is read-only ({exc}). Make it and "
            "its folder writable, or point --home/ORCHESTRATOR_HOME at a writable folder"
        )
    return StateError(f"{action} {path}: {exc}; check the path and its permissions")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """True when SQLite refused because another connection holds the lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


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


def _pragmas(query_only: bool) -> list[str]:
    """The pragmas every connection of the store runs; the writer's add its WAL settings."""
    pragmas = [
        f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
        "PRAGMA foreign_keys = ON",
        f"PRAGMA query_only = {'ON' if query_only else 'OFF'}",
    ]
    if not query_only:
        pragmas += [
            "PRAGMA synchronous = NORMAL",
            f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}",
        ]
    return pragmas


def _rollback_now(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any (on the writer's thread)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # it ended anyway: SQLite rolled it back
            conn.execute("ROLLBACK")


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


class StateDatabase:
    """The open database: one writer, one query-only reader, and the helpers every topic uses.

    One writer connection does every write inside `BEGIN IMMEDIATE` (serialised by an asyncio.Lock
    and retried while another process holds the lock) on its own thread (core.state.sqlite_writer:
    BEGIN, the fence check and the first statement go there in one hop, COMMIT in another); a
    second, query-only connection (aiosqlite) serves reads, so a reader never sees a
    half-written transaction.

    With a postgresql:// URL the same API runs on PostgreSQL (core.state.pg): a pool instead of
    the two connections, one transaction per write holding an advisory lock, the SQL translated
    by core.state.dialect. `path` then names the home's (unused) SQLite file; `where` names the
    database in messages (the URL with its password masked).
    """

    def __init__(
        self,
        path: Path,
        writer: SqliteWriter | None,
        reader: aiosqlite.Connection | None,
        pg: PgBackend | None = None,
    ) -> None:
        """Wrap two open connections (or a PostgreSQL backend); use `await StateStore.open(path)`."""
        self.path = path
        self._pg = pg
        self.where = pg.where if pg is not None else str(path)
        self._writer: SqliteWriter | None = writer
        self._reader: aiosqlite.Connection | None = reader
        self._lock = asyncio.Lock()
        self._writes = 0
        # Leases a write of this store found still held, with when (time.monotonic()): a git
        # step right after such a write needs no read of its own (ensure_fence).
        self._confirmed: dict[Fence, float] = {}
        # The private copy a read-only store reads (wal_copy.py), removed on close.
        self._scratch: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        read_only: bool = False,
        url: str | None = None,
        password_file: str | None = None,
    ) -> Self:
        """Open (creating and migrating if needed) the database at `path`; with `read_only`, open
        an existing database for reads only, touching nothing (for a read-only home). With a
        postgresql:// `url`, open that database instead (psycopg is imported only then)."""
        path = Path(path).expanduser().absolute()
        if url is not None:
            if not is_postgres_url(url):
                raise ConfigError(
                    f"state.url {mask_url(url)} is not a postgresql:// URL; give "
                    "postgresql://USER@HOST:PORT/DATABASE, or unset it to use the home's SQLite file"
                )
            from core.state.pg import PgBackend

            return cls(
                path, None, None, await PgBackend.open(url, password_file, read_only=read_only)
            )
        if read_only:
            return await cls._open_read_only(path)
        try:
            await asyncio.to_thread(_prepare, path)
            writer = await SqliteWriter.connect(path, BUSY_TIMEOUT_MS / 1000, _pragmas(False))
            try:
                await writer.create_function(OWNER_GONE, 1, owner_gone)  # core.liveness's SQL
                await writer.create_function(OWNER_LIVES, 1, owner_lives)
                reader = await cls._connect(path, query_only=True)
            except BaseException:
                await writer.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            raise state_error(path, "cannot open state database", exc) from exc
        _restrict_modes(path)
        return cls(path, writer, reader)

    @classmethod
    async def _open_read_only(cls, path: Path) -> Self:
        """One query-only connection: `mode=ro`; when the WAL index cannot be made (a read-only
        folder and no -shm file), a private copy of the database and its WAL read with `mode=ro`
        (core/state/wal_copy.py says why), or `immutable=1` when there is no WAL to miss. Every
        write raises ReadOnlyHomeError."""
        if not path.is_file():
            raise ReadOnlyHomeError(
                f"there is no state database at {path} and its folder is read-only; "
                "point --home/ORCHESTRATOR_HOME at the home that holds your runs"
            )
        try:
            return cls(path, None, await cls._reader_at(path, "mode=ro"))  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            if is_damaged(exc):
                raise state_error(path, "cannot open state database", exc) from exc
        scratch: Path | None = None
        try:
            if await asyncio.to_thread(has_wal_content, path):
                scratch, copy = await asyncio.to_thread(copy_with_wal, path)
                reader = await cls._reader_at(copy, "mode=ro")
            else:
                reader = await cls._reader_at(path, "immutable=1")
        except (sqlite3.Error, OSError) as exc:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise state_error(path, "cannot open state database", exc) from exc
        store = cls(path, None, reader)  # type: ignore[arg-type]
        store._scratch = scratch
        return store

    @classmethod
    async def _reader_at(cls, path: Path, uri_query: str) -> aiosqlite.Connection:
        """A query-only connection opened with `uri_query` that has read the runs table."""
        reader = await cls._connect(path, query_only=True, uri_query=uri_query)
        try:
            await reader.execute_fetchall("SELECT COUNT(*) FROM runs")
            # A read-only open migrates nothing, but still refuses a schema newer than this code.
            ledger = await reader.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
            )
            applied = (
                [r[0] for r in await reader.execute_fetchall("SELECT name FROM schema_migrations")]
                if list(ledger)
                else []
            )
            known = [name for name, _ in schema.MIGRATIONS]
            unknown = [name for name in applied if name not in known]
            if unknown:
                error = schema.newer_error(len(applied), len(known), unknown)
                raise StateError(f"cannot open state database {path}: {error}")
        except BaseException:
            await reader.close()
            raise
        return reader

    @staticmethod
    async def _connect(
        path: Path, query_only: bool, uri_query: str | None = None
    ) -> aiosqlite.Connection:
        """Open one reading connection in autocommit mode with the store's pragmas."""
        target = f"file:{quote(str(path))}?{uri_query}" if uri_query else path
        db = await aiosqlite.connect(
            target,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            uri=uri_query is not None,
        )
        db.row_factory = sqlite3.Row
        for pragma in _pragmas(query_only):
            await db.execute(pragma)
        await db.create_function(OWNER_GONE, 1, owner_gone)  # core.liveness's SQL uses it
        await db.create_function(OWNER_LIVES, 1, owner_lives)
        return db

    @property
    def read_only(self) -> bool:
        """Whether this store was opened for reads only."""
        if self._pg is not None:
            return self._pg.read_only
        return self._writer is None and self._reader is not None

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql` (core.state.dialect): what SQL the store speaks."""
        return "sqlite" if self._pg is None else "postgresql"

    async def checkpoint(self) -> None:
        """Move what the WAL holds into the database file without waiting for readers (PASSIVE)."""
        async with self._lock:
            if self._writer is not None:
                with contextlib.suppress(sqlite3.Error):
                    await self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        async with self._lock:
            if self._pg is not None:
                await self._pg.close()
                self._pg = None
            if self._reader is not None:
                await self._reader.close()
            if self._writer is not None:
                await self._writer.close()
            self._reader = self._writer = None
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None

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
        """The error for use after close (or for a write on a store opened read-only)."""
        if self._pg is not None and self._pg.read_only:
            return ReadOnlyHomeError(
                f"the state database {self.where} was opened read-only, so this command cannot "
                "write; make the home writable or use another --home"
            )
        if self._reader is not None:
            return ReadOnlyHomeError(
                f"the state database {self.path} was opened read-only (its home is read-only), "
                "so this command cannot write; make the home writable or use another --home"
            )
        return StateError(f"state database {self.where} is closed; open the store again")

    def _confirm(self, fence: Fence | None) -> None:
        """Remember that `fence`'s lease was found held just now (on any thread)."""
        if fence is not None:
            if len(self._confirmed) > 64:  # leases of runs long gone
                self._confirmed = {}
            self._confirmed[fence] = time.monotonic()

    def _recently_confirmed(self, fence: Fence) -> bool:
        """Whether a check of `fence` passed less than FRESH_CONFIRMATION_SECONDS ago."""
        seen = self._confirmed.get(fence)
        return seen is not None and time.monotonic() - seen < FRESH_CONFIRMATION_SECONDS

    def _open_transaction(self, conn: sqlite3.Connection, fence: Fence | None) -> None:
        """BEGIN IMMEDIATE (retried while another process holds the write lock), then the fence
        check; on the writer's thread, in the hop of the transaction's first statement. A
        failure leaves no transaction open."""
        try:
            _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.Error as exc:
            raise state_error(self.path, "cannot start a write on", exc) from exc
        try:
            check_fence_now(conn, fence)  # a taken-over driver writes nothing
        except BaseException:
            _rollback_now(conn)
            raise
        self._confirm(fence)

    def _commit(self, conn: sqlite3.Connection, checkpoint: bool) -> None:
        """COMMIT, and the PASSIVE checkpoint when it is due; a failed COMMIT is rolled back
        on the spot, so a caller cancelled meanwhile leaves no transaction open."""
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback_now(conn)
            raise state_error(self.path, "commit failed on", exc) from exc
        if checkpoint:
            with contextlib.suppress(sqlite3.Error):  # busy readers only make it partial
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One IMMEDIATE transaction on the writer: commit on success, roll back on any error."""
        if self._pg is not None:
            async with self._pg_write() as pg_db:
                yield pg_db
            return
        async with self._lock:
            writer = self._writer
            if writer is None:
                raise self._closed_error()
            fence = current_fence()
            due = (self._writes + 1) % CHECKPOINT_EVERY_WRITES == 0
            tx = WriteTransaction(
                writer,
                lambda conn: self._open_transaction(conn, fence),
                lambda conn: self._commit(conn, due),
            )
            try:
                # It speaks the aiosqlite API the mixins use (core.state.sqlite_writer).
                yield cast("aiosqlite.Connection", tx)
            except BaseException as exc:
                # Queued behind the statement even when we were cancelled while it ran, so a
                # cancel never leaves the write lock held.
                await writer.call(_rollback_now)
                if isinstance(exc, sqlite3.Error):
                    raise state_error(self.path, "write failed on", exc) from exc
                raise
            await tx.finish()
            self._writes += 1

    async def _write_batch(self, steps: Sequence[tuple[str, Sequence[Any]]]) -> list[sqlite3.Row]:
        """Run statements, none needing another's result, in one write transaction and return
        the rows of the last; on SQLite the whole transaction is one hop to the writer thread."""
        async with self._write() as db:
            for sql, params in steps[:-1]:
                await self._soon(db, sql, params)
            self._last_step(db)
            last_sql, last_params = steps[-1]
            return list(await db.execute_fetchall(last_sql, last_params))

    async def _write_one(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        """One statement in its own write transaction (one hop on SQLite); its rows."""
        return await self._write_batch([(sql, params)])

    @asynccontextmanager
    async def _pg_write(self) -> AsyncIterator[aiosqlite.Connection]:
        """_write on PostgreSQL: one transaction (holding the advisory write lock) per write."""
        async with self._lock:
            if self._pg is None or self._pg.read_only:
                raise self._closed_error()
            try:
                async with self._pg.write() as db:
                    fence = current_fence()
                    await check_fence(db, fence)  # a taken-over driver writes nothing
                    self._confirm(fence)
                    # The adapter speaks the aiosqlite API the mixins use (core.state.pg).
                    yield cast("aiosqlite.Connection", db)
            except sqlite3.Error as exc:  # the mixins handled the ones they expect inside
                raise StateError(
                    f"write failed on the state database {self.where}: {exc}; "
                    "check the server and the connection (state.url)"
                ) from exc
            self._writes += 1

    async def _fetch(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[sqlite3.Row]:
        """Run a read on the query-only connection."""
        if self._pg is not None:
            try:
                return cast("list[sqlite3.Row]", await self._pg.fetch(sql, params))
            except sqlite3.Error as exc:
                raise StateError(
                    f"read failed on the state database {self.where}: {exc}; "
                    "check the server and the connection (state.url)"
                ) from exc
        db = self._reader
        if db is None:
            raise self._closed_error()
        try:
            return list(await db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise state_error(self.path, "read failed on", exc) from exc

    async def change_mark(self, run_id: str | None = None) -> int:
        """A mark to take before reading what a caller then waits on (wait_for_change's
        `since`); on PostgreSQL it also starts the LISTEN connection. Always 0 on SQLite."""
        return 0 if self._pg is None else await self._pg.change_mark(run_id)

    def hears_changes(self) -> bool:
        """True when other processes' commits arrive as notifications right now (PostgreSQL with
        its LISTEN connection up); False on SQLite or while that connection reconnects."""
        return self._pg is not None and self._pg.listening()

    async def wait_for_change(
        self, timeout: float, run_id: str | None = None, since: int | None = None
    ) -> int:
        """Wait up to `timeout` seconds for another write (of `run_id` when given) and return
        the new mark: on PostgreSQL a LISTEN notification (or one already seen after `since`)
        ends the wait early; on SQLite this is the polling interval."""
        if self._pg is not None:
            await self._pg.wait_for_change(timeout, run_id, since)
            return self._pg._mark(run_id)
        await asyncio.sleep(timeout)
        return 0

    async def _liveness(self) -> dict[str, str]:
        """The :now parameter of core.liveness's SQL, for one read."""
        return {"now": utcnow()}

    @staticmethod
    async def _insert_lines(
        db: aiosqlite.Connection, lines: Sequence[Any]
    ) -> Callable[[], list[LogRecord]]:
        """Insert log lines (run_id, phase_id, level, message[, ts]) inside a write; returns how
        to read the stored records once the write's next statement (or its COMMIT) ran: on
        SQLite the INSERTs are deferred to ride in that hop (core.state.sqlite_writer)."""
        lines = await fresh_lines(db, lines)  # lines of a taken-over driver are dropped
        if not lines:
            return list
        now = utcnow()
        rows = [(r[0], r[1], r[4] if len(r) > 4 else now, r[2], r[3]) for r in lines]
        if getattr(db, "dialect", "sqlite") == "postgresql":  # ids from RETURNING (pg.py)
            inserted = cast(list[LogRecord], await cast(Any, db).insert_lines(rows))
            return lambda: inserted
        tx = cast(WriteTransaction, db)
        # One multi-row INSERT per chunk, and the cursor's lastrowid numbers the chunk (seq is
        # AUTOINCREMENT, so a chunk's rows are consecutive).
        chunks = [rows[i : i + _LINES_PER_INSERT] for i in range(0, len(rows), _LINES_PER_INSERT)]
        handles = [
            tx.defer(
                "INSERT INTO events (run_id, phase_id, ts, level, message) VALUES "
                + ",".join("(?,?,?,?,?)" for _ in chunk),
                [value for row in chunk for value in row],
            )
            for chunk in chunks
        ]

        def stored() -> list[LogRecord]:
            records: list[LogRecord] = []
            for chunk, handle in zip(chunks, handles, strict=True):
                if handle.cursor is None:
                    raise StateError("log lines read before their INSERT ran")
                first = int(handle.cursor.lastrowid or 0) - len(chunk) + 1
                records.extend(LogRecord(first + i, *row) for i, row in enumerate(chunk))
            return records

        return stored

    @staticmethod
    async def _soon(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> None:
        """Run a statement whose result nobody needs: on SQLite it rides in the write's next hop
        (its errors surface there, still inside the transaction); elsewhere it runs now."""
        if isinstance(db, WriteTransaction):
            db.defer(sql, params)
        else:
            await db.execute(sql, params)

    @staticmethod
    def _last_step(db: aiosqlite.Connection, *, if_rows: bool = False) -> None:
        """Say that the next statement on `db` ends its write: on SQLite the COMMIT rides in the
        same hop (with `if_rows`, only when it returns rows); elsewhere nothing changes."""
        if isinstance(db, WriteTransaction):
            db.commit_with_next(if_rows=if_rows)

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
            raise NotFoundError(f"no {what} with id {id_!r} in {self.where}; {hint}")
        return row

    async def _update_one(
        self, db: aiosqlite.Connection, what: str, id_: str, sql: str, params: tuple[Any, ...]
    ) -> sqlite3.Row:
        """Run `UPDATE ... WHERE id = ?` with RETURNING * in one round trip; NotFoundError if no row."""
        rows = list(await db.execute_fetchall(sql + " RETURNING *", params))
        if not rows:
            hint = "`orchestrator runs` lists run ids" if what == "run" else "check the id"
            raise NotFoundError(f"no {what} with id {id_!r} in {self.where}; {hint}")
        return rows[0]

    async def _get(self, table: str, what: str, id_: str) -> sqlite3.Row:
        """Read one row by id on the reader, or raise NotFoundError."""
        rows = await self._fetch(f"SELECT * FROM {table} WHERE id = ?", (id_,))
        if not rows:
            hint = "`orchestrator runs` lists run ids" if what == "run" else "check the id"
            raise NotFoundError(f"no {what} with id {id_!r} in {self.where}; {hint}")
        return rows[0]
