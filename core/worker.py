"""A worker: claims queued runs and drives each with the same driver as `orchestrator run`.

The worker holds each run's lease under the owner "host:pid@start:worker:NAME" (core.liveness) and drives it with
core.driver.RunDriver, which heartbeats the lease and fences every write with the lease's token
(core.state.fencing). It first takes back at once the runs an earlier process with the same id
left (that process is gone), then claims the oldest queued run nobody holds whenever it has room
(`max_parallel`), polling every `poll_seconds` (on PostgreSQL a submit's NOTIFY wakes an idle
worker at once). `stop()` (SIGTERM, Ctrl-C) ends claiming and
cancels what it drives: each run is stored as interrupted, its lease released, and it stays on
the queue for the next worker. A run that stops on its own as interrupted (it needs a person)
leaves the queue: `orchestrator resume` continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.errors import InputError, OrchestratorError, RunLockedError, StateError
from core.liveness import LAST_WORKER, process_owner
from core.queue import prepare_inputs
from core.records import Run, RunStatus
from core.state.claims import Claim, worker_owner_like
from core.state.fencing import fenced

if TYPE_CHECKING:
    from core.engine import Engine

WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
ACTIVE = (RunStatus.PLANNING, RunStatus.EXECUTING, RunStatus.WAITING)


def check_worker_id(name: str) -> str:
    """The worker id when valid; InputError saying what is allowed otherwise."""
    if not WORKER_ID.fullmatch(name):
        raise InputError(
            f"--id {name!r}: a worker id is 1-63 letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (e.g. --id build-1)"
        )
    return name


class Worker:
    """Claims and drives queued runs until stopped (or, with until_idle, until none is left)."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        *,
        max_parallel: int = 1,
        poll_seconds: float = 1.0,
        lease_seconds: float = 15.0,
        until_idle: bool = False,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        if max_parallel < 1:
            raise InputError(f"--max-parallel {max_parallel}: give 1 or more runs at once")
        if not poll_seconds > 0:
            raise InputError(f"--poll {poll_seconds}: give a number of seconds above 0")
        self.engine = engine
        self.name = check_worker_id(name)
        self.host = socket.gethostname()
        self.owner = f"{process_owner()}:worker:{name}"  # host:pid@start, core.liveness
        self.max_parallel = max_parallel
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.until_idle = until_idle
        self.say = say
        self.driven: list[str] = []  # run ids, in the order this worker started driving them
        self._stop = asyncio.Event()
        self._active: dict[str, asyncio.Task[Run | None]] = {}

    def stop(self) -> None:
        """Stop claiming and interrupt what is being driven (safe from a signal handler)."""
        self._stop.set()

    async def serve(self) -> list[str]:
        """Work until stopped; returns the ids of the runs this worker drove."""
        store = self.engine.store
        stopping = asyncio.create_task(self._stop.wait())
        try:
            like = worker_owner_like(self.host, self.name)
            for claim in await store.take_back(self.owner, like, self.lease_seconds):
                self._start(claim, took_back=True)
            while not self._stop.is_set():
                mark = await self._change_mark()
                claimed = await self._fill()
                if self.until_idle and not claimed and not self._active:
                    break
                waits: list[asyncio.Future[Any]] = [stopping, *self._active.values()]
                changed = None
                if len(self._active) < self.max_parallel:  # room: a submit wakes it (NOTIFY)
                    changed = asyncio.ensure_future(self._changed(mark))
                    waits.append(changed)
                await asyncio.wait(
                    waits, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if changed is not None:
                    changed.cancel()
                self._reap()
        finally:
            stopping.cancel()
            for task in self._active.values():
                task.cancel()  # each driver records its run as interrupted and releases it
            await asyncio.gather(*self._active.values(), return_exceptions=True)
            self._reap()
        return self.driven

    async def _change_mark(self) -> int | None:
        """The store's change mark before looking for runs (None when it cannot be had now)."""
        try:
            return await self.engine.change_mark()
        except StateError:
            return None

    async def _changed(self, mark: int | None) -> None:
        """Return once anything changed since `mark` (on PostgreSQL, a NOTIFY such as a
        submit's); on SQLite this is the poll interval, as the loop's own timeout."""
        with contextlib.suppress(StateError):
            await self.engine.wait_for_change(self.poll_seconds, since=mark)

    async def _fill(self) -> bool:
        """Claim runs while there is room; whether any was claimed."""
        claimed = False
        while len(self._active) < self.max_parallel and not self._stop.is_set():
            try:
                claim = await self.engine.store.claim_next(self.owner, self.lease_seconds)
            except StateError as exc:  # a busy or unreachable database: try at the next poll
                self.say(f"cannot claim now: {exc}")
                break
            if claim is None:
                break
            self._start(claim)
            claimed = True
        return claimed

    def _start(self, claim: Claim, *, took_back: bool = False) -> None:
        run_id = claim.run.id
        self.driven.append(run_id)
        self._active[run_id] = asyncio.create_task(
            self._drive(claim, took_back=took_back), name=f"drive-{run_id}"
        )

    def _reap(self) -> None:
        """Forget the runs whose driving ended."""
        for run_id in [k for k, t in self._active.items() if t.done()]:
            self._active.pop(run_id)

    async def _drive(self, claim: Claim, *, took_back: bool) -> Run | None:
        """Drive one claimed run under its lease's fence; never raises (the worker goes on)."""
        from core.driver import RunDriver

        engine, run = self.engine, claim.run
        how = "took back" if took_back else "claimed"
        self.say(f"{how} run {run.id} (lease token {claim.token})")
        with fenced(run.id, claim.token):
            try:
                engine.journal.log(
                    run.id, None, "info", f"run {how} by worker {self.name} ({self.owner})"
                )
                if run.status in ACTIVE:  # its process is gone: record that before going on
                    run = await engine.lifecycle.record_lost(
                        run.id, claim.previous_owner, clear_lease=False
                    )
                run = await prepare_inputs(engine, run, self.name)
                # kept after the lease is released, so a finished run names who drove it
                run = await engine.store.set_run_metadata(run.id, **{LAST_WORKER: self.owner})
                driver = RunDriver(
                    engine.paths,
                    engine.store,
                    engine.journal,
                    run.id,
                    auto_approve=bool(run.metadata.get("auto_approve")),
                    lifecycle=engine.lifecycle,
                    owner=self.owner,
                )
                final = await driver.drive()
                if driver.lease_lost:
                    self.say(f"run {run.id}: lease lost to another worker; stopped driving it")
                    return None
                if final.status is RunStatus.INTERRUPTED and not self._stop.is_set():
                    await engine.store.unqueue_run(run.id)  # it waits for a person now
                self.say(f"run {run.id} {final.status}")
                return final
            except asyncio.CancelledError:
                # before or after the driver's own handling: an unfinished run stays queued
                self.say(f"run {run.id}: stopped with the worker; `orchestrator show {run.id}`")
                return None
            except RunLockedError as exc:  # LeaseLostError too: another worker has it now
                self.say(f"run {run.id}: {exc}")
                return None
            except Exception as exc:  # noqa: BLE001  (one run's trouble never stops the worker)
                self.say(f"run {run.id}: {exc}")
                return None
            finally:
                with contextlib.suppress(OrchestratorError, asyncio.CancelledError):
                    await engine.store.release_lease(run.id, self.owner)  # no-op once released
