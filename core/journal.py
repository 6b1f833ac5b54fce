"""The engine's single path to record and announce: persist first, then publish on the bus.

`log()` is synchronous and only appends to a buffer, so logging never stalls the engine. A
background task writes the buffer in batches (one transaction each) and only then publishes one
`LogEmitted` per run and batch; a subscriber that gets the event can already read the lines from
the store. `emit()` announces a state event whose row the caller has already written; it flushes
buffered lines first so subscribers see lines and state changes in the order the engine made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from core.bus import EventBus
from core.events import Event, LogEmitted
from core.procenv import secret_redactor
from core.records import LogRecord
from core.state.fencing import Fence, current_fence, unfenced
from core.state.store import LogLine, StateStore
from core.timeutil import utcnow

R = TypeVar("R")
run_logger = logging.getLogger("orchestrator.run")
# Live-log lines copied into the structured log file; the high-volume stream (model text, agent
# and verification output, info lines) stays in the database and the run.log artifact.
_MIRRORED_LEVELS = frozenset({"warning", "error", "critical"})
_journal_logger = logging.getLogger("orchestrator.journal")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Lines kept while the database refuses writes; beyond this the oldest are dropped.
MAX_BUFFERED_LINES = 200_000


class Journal:
    """Buffers log lines, writes them in batches, and publishes after each write commits."""

    def __init__(
        self, store: StateStore, bus: EventBus, flush_interval: float = 0.05, max_batch: int = 500
    ) -> None:
        """Bind the journal to a store and a bus; call start() to run the background writer."""
        self.store = store
        self.bus = bus
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._redact = secret_redactor()  # secret values from the environment never reach the store
        self._buffer: deque[tuple[str, str | None, str, str, str, Fence | None]] = deque()
        self._appended = 0  # lines ever logged
        self._consumed = 0  # lines written (or dropped) so far
        self._events: deque[tuple[int, Event]] = deque()  # (lines logged before it, event)
        self._pending = asyncio.Event()  # set when lines wait to be written
        self._full = asyncio.Event()  # set when a whole batch is waiting
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped_lines = 0

    def line(self, run_id: str, phase_id: str | None, level: str, message: str) -> LogLine:
        """A log line ready to store (redacted, stamped), mirrored to the `orchestrator.run`
        logger; `record` callers write it inside their own transaction."""
        level = level.lower()
        message = self._redact(message)
        if level in _MIRRORED_LEVELS:
            run_logger.log(_LEVELS[level], message, extra={"run_id": run_id, "phase_id": phase_id})
        return (run_id, phase_id, level, message, utcnow(), current_fence())

    async def record(
        self,
        write: Callable[[list[LogLine]], Awaitable[tuple[R, list[LogRecord]]]],
        events: Callable[[R], Sequence[Event]],
    ) -> R:
        """Write a state change and every buffered line in ONE transaction, then publish.

        `write` gets the buffered lines (oldest first) to store with its change and returns the
        change's result and the stored lines; after the commit the lines are published, then
        the events `events(result)` names, so subscribers see them in the order they happened.
        """
        async with self._flush_lock:
            while len(self._buffer) > self.max_batch:  # older lines first, in normal batches
                await self._write_batch(self.max_batch)
            count = len(self._buffer)
            result, records = await write([self._buffer[i] for i in range(count)])
            for _ in range(count):
                self._buffer.popleft()
            self._consumed += count
            self._publish(records)
            self._publish_due_events()
            for event in events(result):
                self._publish_event(event)
            if not self._buffer:
                self._pending.clear()
                self._full.clear()
        return result

    def log(self, run_id: str, phase_id: str | None, level: str, message: str) -> None:
        """Queue one log line (never blocks) and mirror it to the `orchestrator.run` logger."""
        level = level.lower()
        message = self._redact(message)
        # the line keeps its writer's lease fence: whoever flushes it, a stale one is dropped
        self._buffer.append((run_id, phase_id, level, message, utcnow(), current_fence()))
        self._appended += 1
        while len(self._buffer) > MAX_BUFFERED_LINES:
            self._buffer.popleft()
            self._consumed += 1
            self.dropped_lines += 1
        self._pending.set()
        if len(self._buffer) >= self.max_batch:
            self._full.set()
        if level in _MIRRORED_LEVELS:
            run_logger.log(_LEVELS[level], message, extra={"run_id": run_id, "phase_id": phase_id})

    async def start(self) -> None:
        """Start the background writer; calling it twice is harmless."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="journal-writer")

    async def stop(self) -> None:
        """Stop the background writer after writing everything buffered."""
        self._stopping = True
        self._pending.set()
        self._full.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        """Write every buffered line now and publish the batches; raises StateError on failure."""
        async with self._flush_lock:
            while self._buffer:
                await self._write_batch(min(len(self._buffer), self.max_batch))
            self._publish_due_events()
            if not self._buffer:
                self._pending.clear()
                self._full.clear()

    async def _write_batch(self, count: int) -> None:
        """Store the oldest `count` buffered lines in one transaction and publish them."""
        batch: list[LogLine] = [self._buffer[i] for i in range(count)]
        with unfenced():  # a batch holds many runs' lines, each checked by its own fence
            records = await self.store.append_logs(batch)
        for _ in range(count):
            self._buffer.popleft()
        self._consumed += count
        self._publish(records)
        self._publish_due_events()

    async def emit(self, event: Event) -> None:
        """Publish a state event the caller already persisted, after the log lines logged before it.

        With no line waiting it is published at once; otherwise the writer publishes it right after
        those lines are stored, so order is kept without a database write per event.
        """
        if self._consumed >= self._appended:
            self._publish_event(event)
        else:
            self._events.append((self._appended, event))
            self._pending.set()

    def _publish_event(self, event: Event) -> None:
        self.bus.publish(event)
        run_logger.info(
            type(event).__name__, extra={"run_id": event.run_id, "data": _fields(event)}
        )

    def _publish_due_events(self) -> None:
        """Publish queued state events whose preceding log lines are now stored."""
        while self._events and self._events[0][0] <= self._consumed:
            self._publish_event(self._events.popleft()[1])

    def _publish(self, records: list[LogRecord]) -> None:
        """Publish stored lines as one LogEmitted per run, keeping their order."""
        by_run: dict[str, list[LogRecord]] = {}
        for record in records:
            by_run.setdefault(record.run_id, []).append(record)
        for run_id, lines in by_run.items():
            self.bus.publish(LogEmitted(run_id=run_id, lines=tuple(lines)))

    async def _run(self) -> None:
        """Wait for lines, give them flush_interval to gather (less if a batch is full), write."""
        while not self._stopping:
            await self._pending.wait()
            if not self._stopping and len(self._buffer) < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval)
            self._pending.clear()
            self._full.clear()
            try:
                await self.flush()
            except Exception:
                # Keep the lines and try again on the next round; the database may be busy.
                _journal_logger.exception("could not write log lines; will retry")
                await asyncio.sleep(self.flush_interval)
                self._pending.set()


def _fields(event: Event) -> dict[str, object]:
    """The event's fields for the structured log file, without the run id it already carries."""
    # Shallow: the fields are plain values, lists and dicts of them (asdict copies them deeply).
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "run_id"}
