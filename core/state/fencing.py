"""Lease fencing: every write a run's driver makes carries its lease's token and is refused when
another process has taken the run over since (the token in the database moved on).

A driver holds a run's lease with a token (`runs.lease_token`, one more at every claim or
take-over, core.state.claims). It sets `FENCE` for its task tree (`with fenced(run_id, token)`;
tasks it creates inherit it), and the store checks it inside every write transaction
(`StateDatabase._write`) before anything is written, so a stale writer changes nothing. Log lines
remember the fence they were logged under (core.journal) and are checked where they are inserted,
whoever flushes them; lines of a stale fence are dropped there. Every backend's write path does
both: `check_fence(db, current_fence())` first in each write transaction, and `fresh_lines` on
the log lines it inserts (core.state.db for SQLite).

Git steps the database cannot roll back (commit, merge, push) ask `ensure_fence` first; a write
of the same task that passed its check less than FRESH_CONFIRMATION_SECONDS before stands for
that read.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from core.errors import LeaseLostError

_log = logging.getLogger("orchestrator.fencing")


@dataclass(frozen=True)
class Fence:
    """The lease a writer believes it holds: run id and fencing token."""

    run_id: str
    token: int


FENCE: ContextVar[Fence | None] = ContextVar("orchestrator_fence", default=None)

# The token check, run inside the write transaction (portable SQL).
TOKEN_SQL = "SELECT lease_token, lease_owner FROM runs WHERE id = ?"

# How long a passed check stands for the check before a git commit, merge or push
# (`ensure_fence`): one made again at once would leave the same window before the git step, which
# itself takes longer than this.
FRESH_CONFIRMATION_SECONDS = 0.1


@contextlib.contextmanager
def fenced(run_id: str, token: int) -> Iterator[Fence]:
    """Make every write of this task (and the tasks it creates) check this lease's token."""
    fence = Fence(run_id, token)
    reset = FENCE.set(fence)
    try:
        yield fence
    finally:
        FENCE.reset(reset)


@contextlib.contextmanager
def unfenced() -> Iterator[None]:
    """Write without the task's fence (the journal's batches carry each line's own fence)."""
    reset = FENCE.set(None)
    try:
        yield
    finally:
        FENCE.reset(reset)


def current_fence() -> Fence | None:
    """The fence of the running task, if its writes are fenced."""
    return FENCE.get()


def stale_error(fence: Fence, row: Any) -> LeaseLostError:
    """The refusal for a writer whose token is older than the stored one."""
    now = "no row" if row is None else f"token {row[0]} held by {row[1] or 'nobody'}"
    return LeaseLostError(
        f"run {fence.run_id}: this process's lease (token {fence.token}) was taken over ({now}); "
        "the write is refused and this process stops driving the run; "
        f"`orchestrator show {fence.run_id}` shows who drives it now"
    )


def judge_fence(fence: Fence, rows: Sequence[Any]) -> None:
    """Raise LeaseLostError unless TOKEN_SQL's `rows` hold `fence`'s token."""
    row = rows[0] if rows else None
    if row is None or int(row[0]) != fence.token:
        raise stale_error(fence, row)


async def check_fence(db: Any, fence: Fence | None) -> None:
    """Raise LeaseLostError when `fence` is stale; call inside the write transaction."""
    if fence is not None:
        judge_fence(fence, list(await db.execute_fetchall(TOKEN_SQL, (fence.run_id,))))


def check_fence_now(conn: sqlite3.Connection, fence: Fence | None) -> None:
    """check_fence on a sqlite3 connection, for a step that runs on the writer's own thread."""
    if fence is not None:
        judge_fence(fence, conn.execute(TOKEN_SQL, (fence.run_id,)).fetchall())


async def fresh_lines(db: Any, lines: Sequence[Any]) -> list[Any]:
    """The log lines whose fence (their 6th item, if any) is current; inside the write."""
    fences = {r[5] for r in lines if len(r) > 5 and r[5] is not None}
    fences.discard(current_fence())  # the write's own fence was checked when it began
    if not fences:
        return list(lines)
    stale: set[Fence] = set()
    for fence in fences:
        try:
            await check_fence(db, fence)
        except LeaseLostError as exc:
            stale.add(fence)
            _log.warning("log lines dropped: %s", exc)
    return [r for r in lines if not (len(r) > 5 and r[5] in stale)]
