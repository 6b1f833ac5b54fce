"""The PostgreSQL backend of the state store: a psycopg 3 async pool, and a thin connection adapter
that runs the store's SQLite-style SQL (translated by core.state.dialect) and returns rows that
allow both `row[0]` and `row["col"]`, like sqlite3.Row.

Imported only when the state URL says postgresql:// (core.state.db), so SQLite commands never
load psycopg. Errors leave this module as the sqlite3 exception classes the store's mixins
already catch (IntegrityError, OperationalError, DatabaseError), with the password masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import AsyncClientCursor
from psycopg.adapt import Dumper, Loader
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool

from config.dburl import mask_text, mask_url
from core.errors import StateError
from core.records import LogRecord
from core.state import schema
from core.state.dialect import (
    PG_FUNCTIONS,
    PG_FUNCTIONS_PRESENT,
    WRITE_LOCK_SQL,
    ddl_to_postgres,
    migration_for_postgres,
    to_postgres,
)
from core.timeutil import utcnow

CONNECT_TIMEOUT_SECONDS = 10
POOL_MAX = 4

_LEDGER = ddl_to_postgres(
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)


class PgRow(tuple[Any, ...]):
    """A result row read by position or by column name (the first column of that name)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Self:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key.lower()])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, as sqlite3.Row.keys() gives them."""
        return list(self._index)


def _row_factory(cursor: Any) -> RowMaker[PgRow]:
    """psycopg's row factory making PgRow objects for one result."""
    index: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        index.setdefault(column.name.lower(), i)
    return lambda values: PgRow(values, index)


class _NumberLoader(Loader):
    """numeric (SUM and AVG of BIGINT): an int when whole, else a float, as SQLite returns them."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return float(text) if any(c in text for c in ".eEN") else int(text)


class _LooseBoolDumper(Dumper):
    """A bool as the untyped literal '1'/'0', so it works where SQLite takes 1/0: in an integer
    column as in a CASE WHEN condition (PostgreSQL reads '1' as true there)."""

    oid = 0

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: Any) -> bytes:
        return b"'1'" if obj else b"'0'"


def _configure_adapters(conn: psycopg.AsyncConnection[Any]) -> None:
    """The loaders and dumpers that make PostgreSQL's values look like SQLite's."""
    conn.adapters.register_loader("numeric", _NumberLoader)
    conn.adapters.register_dumper(bool, _LooseBoolDumper)


class PgError:
    """Turns psycopg's errors into the sqlite3 classes the mixins catch, password masked."""

    def __init__(self, url: str) -> None:
        self.url = url

    def convert(self, exc: psycopg.Error) -> sqlite3.Error:
        text = mask_text(" ".join(str(exc).split()), self.url)
        if isinstance(exc, psycopg.IntegrityError):
            return sqlite3.IntegrityError(text)
        if isinstance(exc, psycopg.OperationalError):
            return sqlite3.OperationalError(text)
        return sqlite3.DatabaseError(text)


# The NOTIFY channel of committed writes; payloads carry ids only (Changes.payload).
CHANNEL = "orchestrator_state"
NOTIFY_MAX_BYTES = 4000  # PostgreSQL's limit is 8000; beyond this only the run ids are sent
_INTERVENTION_WRITE = re.compile(
    r"\s*(INSERT\s+INTO|UPDATE)\s+manual_interventions\b", re.IGNORECASE
)


class Changes:
    """What one write transaction changed, coalesced: per run its newest event seq and the
    interventions written. Sent as one NOTIFY when the transaction commits."""

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.interventions: dict[str, list[str]] = {}

    def event(self, run_id: str, seq: int) -> None:
        self.events[run_id] = max(seq, self.events.get(run_id, 0))

    def intervention(self, run_id: str, intervention_id: str) -> None:
        ids = self.interventions.setdefault(run_id, [])
        if intervention_id not in ids:
            ids.append(intervention_id)

    def payload(self) -> str | None:
        """`{"e": {run: seq}, "i": {run: [ids]}}`, or only the run ids when that is too long."""
        if not self.events and not self.interventions:
            return None
        text = json.dumps({"e": self.events, "i": self.interventions}, separators=(",", ":"))
        if len(text.encode()) <= NOTIFY_MAX_BYTES:
            return text
        runs = sorted(set(self.events) | set(self.interventions))
        text = json.dumps({"runs": runs}, separators=(",", ":"))
        return text if len(text.encode()) <= NOTIFY_MAX_BYTES else json.dumps({"all": True})


class _Result:
    """What `await db.execute(...)` gives the mixins: rowcount and the rows (no lastrowid)."""

    def __init__(self, rowcount: int, rows: list[PgRow]) -> None:
        self.rowcount = rowcount
        self.lastrowid = None
        self._rows = rows

    async def fetchall(self) -> list[PgRow]:
        return self._rows

    async def fetchone(self) -> PgRow | None:
        return self._rows[0] if self._rows else None


class PgConnection:
    """The store's connection interface (execute, execute_fetchall, executemany) on psycopg."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.AsyncConnection[Any], errors: PgError) -> None:
        self._conn = conn
        self._errors = errors
        self.changes = Changes()

    async def execute(self, sql: str, params: Any = ()) -> _Result:
        """Run one statement; its rows (if it returns any) are read at once. A write of
        interventions also returns their ids, for the transaction's NOTIFY (Changes)."""
        query = to_postgres(sql)
        watched = _INTERVENTION_WRITE.match(sql) is not None
        if watched and not re.search(r"\bRETURNING\b", query, re.IGNORECASE):
            query += " RETURNING id, run_id"
        try:
            cur = await self._conn.execute(query, params)  # type: ignore[arg-type]
            rows = await cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise self._errors.convert(exc) from exc
        if watched:
            for row in rows:
                self.changes.intervention(row["run_id"], row["id"])
        return _Result(cur.rowcount, rows)

    async def execute_fetchall(self, sql: str, params: Any = ()) -> list[PgRow]:
        """Run one statement and return all its rows."""
        return await (await self.execute(sql, params)).fetchall()

    async def executemany(self, sql: str, seq: Sequence[Any]) -> _Result:
        """Run one statement once per parameter set."""
        try:
            async with self._conn.cursor() as cur:
                await cur.executemany(to_postgres(sql), list(seq))  # type: ignore[arg-type]
                return _Result(cur.rowcount, [])
        except psycopg.Error as exc:
            raise self._errors.convert(exc) from exc

    async def insert_lines(self, rows: list[tuple[Any, ...]]) -> list[LogRecord]:
        """Insert events rows (run_id, phase_id, ts, level, message); ids from RETURNING seq."""
        records: list[LogRecord] = []
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            seqs = await self.execute_fetchall(
                "INSERT INTO events (run_id, phase_id, ts, level, message) VALUES "
                + ",".join("(?,?,?,?,?)" for _ in chunk)
                + " RETURNING seq",
                [value for row in chunk for value in row],
            )
            records.extend(LogRecord(s[0], *row) for s, row in zip(seqs, chunk, strict=True))
        for record in records:
            self.changes.event(record.run_id, record.seq)
        return records


def _read_password(password_file: str | None) -> str | None:
    """The password in `state.password_file` (its first line), or None without a file."""
    if not password_file:
        return None
    path = Path(password_file).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise StateError(
            f"state.password_file {path} cannot be read ({exc.strerror}); create it with the "
            "database password on its first line (mode 0600) or unset state.password_file"
        ) from None
    return lines[0].strip() if lines else None


class PgBackend:
    """An open PostgreSQL state database: a pool, the write transaction, migrations at open."""

    def __init__(
        self,
        url: str,
        pool: AsyncConnectionPool[Any],
        read_only: bool,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.where = mask_url(url)
        self.read_only = read_only
        self._pool = pool
        self._errors = PgError(url)
        self._kwargs = kwargs or {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._waiters: list[tuple[str | None, asyncio.Future[dict[str, Any]]]] = []
        # Notifications seen per run (and ones naming every run), so a waiter that read the
        # state after taking a mark misses no change that came in between.
        self._seen: dict[str, int] = {}
        self._seen_all = 0

    @classmethod
    async def open(cls, url: str, password_file: str | None, *, read_only: bool = False) -> Self:
        """Connect, check the schema (migrating it unless read-only) and open the pool."""
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "cursor_factory": AsyncClientCursor,
            "row_factory": _row_factory,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": "orchestrator",
        }
        password = _read_password(password_file)
        if password is not None:
            kwargs["password"] = password
        errors = PgError(url)
        try:
            conn = await psycopg.AsyncConnection.connect(url, **kwargs)
        except psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the state database {mask_url(url)}: "
                f"{errors.convert(exc)}; check state.url (or --db/ORCHESTRATOR__STATE__URL), "
                "that the server runs, and the password (state.password_file or the URL)"
            ) from None
        try:
            _configure_adapters(conn)
            await migrate(PgConnection(conn, errors), read_only=read_only)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open state database {mask_url(url)}: {exc}") from None
        finally:
            await conn.close()

        async def configure(new: psycopg.AsyncConnection[Any]) -> None:
            _configure_adapters(new)

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=POOL_MAX,
            open=False,
            configure=configure,
            # A connection the server dropped (a restart, a network pause) is replaced, not used.
            check=AsyncConnectionPool.check_connection,
            name="orchestrator-state",
            timeout=30,
        )
        await pool.open(wait=False)
        return cls(url, pool, read_only, kwargs)

    async def fetch(self, sql: str, params: Any = ()) -> list[PgRow]:
        """One read on a pooled connection (autocommit: it sees only committed writes)."""
        async with self._pool.connection() as conn:
            return await PgConnection(conn, self._errors).execute_fetchall(sql, params)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[PgConnection]:
        """One transaction that holds the store's advisory write lock; commit or roll back."""
        async with self._pool.connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(WRITE_LOCK_SQL)
                    db = PgConnection(conn, self._errors)
                    yield db
                    payload = db.changes.payload()
                    if payload is not None:  # delivered to listeners only once this commits
                        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except psycopg.Error as exc:
                raise self._errors.convert(exc) from exc

    def _mark(self, run_id: str | None) -> int:
        """How many notifications concerned `run_id` (every run's when None) so far."""
        if run_id is None:
            return self._seen_all + sum(self._seen.values())
        return self._seen_all + self._seen.get(run_id, 0)

    def listening(self) -> bool:
        """True while the LISTEN connection holds (notifications arrive); False while it reconnects."""
        return self._listening.is_set()

    async def change_mark(self, run_id: str | None = None, ready_seconds: float = 5.0) -> int:
        """Start listening (waiting up to `ready_seconds` for LISTEN to hold) and return the
        mark to pass to wait_for_change after reading the state it watches."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="orchestrator-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), ready_seconds)
        return self._mark(run_id)

    async def wait_for_change(
        self, timeout: float, run_id: str | None = None, since: int | None = None
    ) -> dict[str, Any] | None:
        """The next committed change's notification (of `run_id` when given), or None after
        `timeout` seconds: callers poll on, so a lost LISTEN connection only slows them down.
        With `since` (a change_mark), a change seen after that mark ends the wait at once."""
        if self._listener is None:
            await self.change_mark(run_id, ready_seconds=0)
        if since is not None and self._mark(run_id) != since:
            return {"seen": True}
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (run_id, waiter)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def _listen(self) -> None:
        """LISTEN on its own connection and wake the waiters; reconnect with backoff."""
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, **self._kwargs)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    delay = 0.5
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except (psycopg.Error, OSError):
                self._listening.clear()
                self._seen_all += 1  # what changed while deaf is unknown: waiters re-read
                await asyncio.sleep(delay)  # the waiters' timeouts keep them polling meanwhile
                delay = min(delay * 2, 10.0)

    def _wake(self, payload: str) -> None:
        """Resolve the waiters this notification concerns."""
        try:
            change = json.loads(payload)
        except ValueError:
            change = {"all": True}
        runs = set(change.get("runs", ())) | set(change.get("e", {})) | set(change.get("i", {}))
        if change.get("all"):
            self._seen_all += 1
        for run_id in runs:
            self._seen[run_id] = self._seen.get(run_id, 0) + 1
        for run_id, waiter in list(self._waiters):
            if not waiter.done() and (run_id is None or run_id in runs or change.get("all")):
                waiter.set_result(change)

    async def close(self) -> None:
        """Stop listening; close the pool and its connections."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._pool.close()


async def applied_migrations(db: PgConnection) -> list[str]:
    """Names of the migrations this database has applied, oldest first ([] for an empty one)."""
    exists = await db.execute_fetchall("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists[0][0]:
        return []
    return [
        r[0] for r in await db.execute_fetchall("SELECT name FROM schema_migrations ORDER BY rowid")
    ]


async def migrate(db: PgConnection, *, read_only: bool = False) -> int:
    """Check the schema is not newer than this program and apply what is pending, in one
    transaction under the write lock; read-only opens only check. Returns the applied count."""
    known = [name for name, _ in schema.MIGRATIONS]
    await db.execute("BEGIN")
    try:
        if not read_only:
            await db.execute(WRITE_LOCK_SQL)
        applied = await applied_migrations(db)
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise schema.newer_error(len(applied), len(known), unknown)
        if not read_only:
            await db.execute(_LEDGER)
            pending = [name for name in known if name not in applied]
            present = await db.execute_fetchall(PG_FUNCTIONS_PRESENT)
            if pending or not present[0][0]:  # created with the schema, not on every open
                for statement in PG_FUNCTIONS:
                    await db.execute(statement)
            done = set(applied)
            for name, statements in schema.MIGRATIONS:
                if name in done:
                    continue
                for statement in migration_for_postgres(name, statements):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                    (name, utcnow()),
                )
                done.add(name)
            applied = [n for n in known if n in done]
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return len(applied)


async def inspect_postgres(url: str, password_file: str | None) -> Any:
    """doctor's DatabaseReport of a PostgreSQL state database: reachable, size, migrations.
    Raises StateError (password masked) when it cannot be reached."""
    from core.state.health import DatabaseReport

    backend = await PgBackend.open(url, password_file, read_only=True)
    try:
        report = DatabaseReport(path=backend.where, exists=True, integrity=["ok"])
        async with backend._pool.connection() as conn:
            db = PgConnection(conn, backend._errors)
            size = await db.execute_fetchall("SELECT pg_database_size(current_database())")
            report.bytes = int(size[0][0])
            applied = await applied_migrations(db)
        known = [name for name, _ in schema.MIGRATIONS]
        report.applied_migrations = applied
        report.pending_migrations = [n for n in known if n not in applied]
        report.unknown_migrations = [n for n in applied if n not in known]
        return report
    finally:
        await backend.close()
