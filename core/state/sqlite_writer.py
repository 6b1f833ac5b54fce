"""The store's SQLite writer: one thread owning one connection, reached by one hop per call.

aiosqlite makes every step of a write transaction its own hop to its thread and back (BEGIN, the
fence check, each statement, COMMIT), and has no public way to run several steps in one. This
writer speaks the subset of aiosqlite's API the store's mixins use (execute, execute_fetchall,
executemany, cursors with lastrowid and rowcount) and also runs any function on its thread
(`call`). A write transaction (`WriteTransaction`) uses that to save hops: BEGIN and the fence
check ride with its first statement, statements nobody awaits (`defer`) with the next one, and
COMMIT (with the periodic checkpoint) with its last statement when the caller knows which that
is, else alone at the end.

Every call is queued before its first await, so a call whose caller is cancelled still runs, in
order: a ROLLBACK queued after a cancelled BEGIN always follows it (core.state.db relies on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]
_Job = tuple[asyncio.Future[Any], Callable[[], Any]] | None


@dataclass(frozen=True)
class WriterCursor:
    """What a statement's cursor tells the mixins: the last inserted rowid and the rows changed."""

    lastrowid: int | None
    rowcount: int


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Deliver a job's outcome unless its caller stopped waiting (cancelled)."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _serve(conn: sqlite3.Connection, jobs: SimpleQueue[_Job]) -> None:
    """The writer thread: run queued functions in order until told to stop (None), then close."""
    try:
        while (job := jobs.get()) is not None:
            future, fn = job
            try:
                ok, value = True, fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                ok, value = False, exc
            with contextlib.suppress(RuntimeError):  # its event loop is gone: nobody waits
                future.get_loop().call_soon_threadsafe(_settle, future, ok, value)
    finally:
        conn.close()


class SqliteWriter:
    """One sqlite3 connection used only on its own thread; every method is one hop there."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Serve `conn` (opened with check_same_thread=False) on a new daemon thread."""
        self.conn = conn
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._thread = threading.Thread(
            target=_serve, args=(conn, self._jobs), name="state-writer", daemon=True
        )
        self._thread.start()

    @classmethod
    async def connect(cls, path: Path, timeout: float, setup: Iterable[str]) -> SqliteWriter:
        """Open an autocommit connection to `path` with sqlite3.Row rows and run `setup`'s
        statements (pragmas) on it, off the event loop."""

        def opened() -> sqlite3.Connection:
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.row_factory = sqlite3.Row
                for statement in setup:
                    conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            return conn

        return cls(await asyncio.to_thread(opened))

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the writer thread and return what it returns (or raise)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        conn = self.conn
        self._jobs.put((future, lambda: fn(conn)))  # queued now: it runs even if we are cancelled
        return await future

    async def execute(self, sql: str, params: Params = ()) -> WriterCursor:
        """Run one statement; its cursor's lastrowid and rowcount."""
        return await self.call(lambda c: cursor_of(c.execute(sql, params)))

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Run one statement and return all its rows."""
        return await self.call(lambda c: c.execute(sql, params).fetchall())

    async def executemany(self, sql: str, rows: Iterable[Params]) -> WriterCursor:
        """Run one statement for each parameter set."""
        return await self.call(lambda c: cursor_of(c.executemany(sql, rows)))

    async def create_function(self, name: str, arity: int, fn: Callable[..., Any]) -> None:
        """Make a Python function callable from this connection's SQL."""
        await self.call(lambda c: c.create_function(name, arity, fn))

    async def close(self) -> None:
        """Finish the queued calls, close the connection and end the thread."""
        if not self._thread.is_alive():
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)


def cursor_of(cursor: sqlite3.Cursor) -> WriterCursor:
    """The figures of a finished statement's cursor."""
    return WriterCursor(cursor.lastrowid, cursor.rowcount)


class Deferred:
    """A statement whose result nobody awaits: it runs at the start of the transaction's next
    hop, and its cursor's figures are here once that hop returned."""

    cursor: WriterCursor | None = None


class WriteTransaction:
    """The connection a write transaction's body sees: its first statement carries `opening`
    (BEGIN IMMEDIATE and the fence check) in the same hop, deferred statements ride with the
    next one, and `closing` (COMMIT) rides with the statement after `commit_with_next()`, or
    goes alone in `finish()`."""

    def __init__(
        self,
        writer: SqliteWriter,
        opening: Callable[[sqlite3.Connection], None],
        closing: Callable[[sqlite3.Connection], None],
    ) -> None:
        """Statements go to `writer`; `opening` runs once before the first, `closing` once after
        the last (both on the writer thread)."""
        self._writer = writer
        self._opening: Callable[[sqlite3.Connection], None] | None = opening
        self._closing = closing
        self._close_next: bool | None = None  # True: commit after the next; False: if it has rows
        self._deferred: list[tuple[str, Params, Deferred]] = []
        self.committed = False

    def commit_with_next(self, *, if_rows: bool = False) -> None:
        """Make the next statement the transaction's last: COMMIT runs in its hop right after it
        succeeds (with `if_rows`, only when it returned rows; otherwise the transaction stays
        open for the caller to read why, then roll back)."""
        self._close_next = not if_rows

    def defer(self, sql: str, params: Params = ()) -> Deferred:
        """Queue a statement to run first in the next hop; its figures land in the handle."""
        if self.committed:
            raise RuntimeError("a statement after its write transaction's COMMIT")
        handle = Deferred()
        self._deferred.append((sql, params, handle))
        return handle

    def _step(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        """`fn` with the opening before it (if no statement carried it yet), the deferred
        statements next, and the closing after it (if it is the last)."""
        if self.committed:
            raise RuntimeError("a statement after its write transaction's COMMIT")
        opening, self._opening = self._opening, None
        deferred, self._deferred = self._deferred, []
        close, self._close_next = self._close_next, None

        def step(conn: sqlite3.Connection) -> T:
            if opening is not None:
                opening(conn)
            for sql, params, handle in deferred:
                handle.cursor = cursor_of(conn.execute(sql, params))
            result = fn(conn)
            if close or (close is False and result):
                self._closing(conn)
                self.committed = True  # read on the loop only after this hop returned
            return result

        return step

    async def execute(self, sql: str, params: Params = ()) -> WriterCursor:
        """Run one statement inside the transaction."""
        return await self._writer.call(self._step(lambda c: cursor_of(c.execute(sql, params))))

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Run one statement inside the transaction and return all its rows."""
        return await self._writer.call(self._step(lambda c: c.execute(sql, params).fetchall()))

    async def executemany(self, sql: str, rows: Iterable[Params]) -> WriterCursor:
        """Run one statement for each parameter set inside the transaction."""
        return await self._writer.call(self._step(lambda c: cursor_of(c.executemany(sql, rows))))

    async def finish(self) -> None:
        """COMMIT (after the deferred statements), unless the last statement carried it."""
        if not self.committed:
            self.commit_with_next()
            await self._writer.call(self._step(lambda _: None))
