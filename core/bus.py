"""In-process event bus: publish never blocks, state events are never lost, log batches are bounded.

Each subscriber owns two queues. State events go into an unbounded deque so no transition is ever
missed. `LogEmitted` batches go into a deque holding at most `max_log_batches`; when it is full the
newest batch is merged into the queued batch before it (if nothing came between them and the merged
batch stays small), otherwise the oldest queued batch is dropped and its lines are counted in
`dropped_log_lines`, so the subscriber knows to reload history from the store. Items carry a
per-subscriber sequence number and are delivered in publish order.

`publish` must be called from the event loop's thread (the engine and the TUI share one loop).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from core.events import Event, LogEmitted

# Largest batch that overflow coalescing builds; keeps a stalled subscriber's memory bounded.
MAX_COALESCED_LINES = 1000


class Subscription:
    """One subscriber's view of the bus: an async iterator of events in publish order."""

    def __init__(self, bus: EventBus, max_log_batches: int, run_id: str | None) -> None:
        """Create an empty subscription; use EventBus.subscribe rather than calling this."""
        if max_log_batches < 1:
            raise ValueError("max_log_batches must be at least 1")
        self._bus = bus
        self.run_id = run_id
        self.max_log_batches = max_log_batches
        self.dropped_log_lines = 0
        self._seq = 0
        self._state: deque[tuple[int, Event]] = deque()
        self._logs: deque[tuple[int, LogEmitted]] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False  # closed by the subscriber: stop at once
        self._ended = False  # bus closed: deliver what is queued, then stop

    @property
    def closed(self) -> bool:
        """True once no further events will be delivered."""
        return self._closed or (self._ended and not self._state and not self._logs)

    def pending(self) -> int:
        """How many items (state events plus log batches) wait to be read."""
        return len(self._state) + len(self._logs)

    def _offer(self, event: Event) -> None:
        """Queue one event without ever blocking; called by EventBus.publish."""
        if self._closed or self._ended:
            return
        if self.run_id is not None and event.run_id != self.run_id:
            return
        if isinstance(event, LogEmitted):
            self._offer_logs(event)
        else:
            self._seq += 1
            self._state.append((self._seq, event))
        self._wakeup.set()

    def _offer_logs(self, batch: LogEmitted) -> None:
        """Queue a log batch, coalescing into the previous batch or dropping the oldest when full."""
        if len(self._logs) >= self.max_log_batches:
            tail_seq, tail = self._logs[-1]
            adjacent = tail_seq == self._seq  # nothing was queued after the tail batch
            merged = len(tail.lines) + len(batch.lines)
            if adjacent and tail.run_id == batch.run_id and merged <= MAX_COALESCED_LINES:
                self._logs[-1] = (tail_seq, LogEmitted(tail.run_id, tail.lines + batch.lines))
                return
            _, oldest = self._logs.popleft()
            self.dropped_log_lines += len(oldest.lines)
        self._seq += 1
        self._logs.append((self._seq, batch))

    def _pop(self) -> Event | None:
        """Take the oldest queued item across both queues, or None if both are empty."""
        if self._state and (not self._logs or self._state[0][0] < self._logs[0][0]):
            return self._state.popleft()[1]
        if self._logs:
            return self._logs.popleft()[1]
        return None

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when nothing is queued right now."""
        if self._closed:
            return None
        return self._pop()

    async def get(self) -> Event | None:
        """Wait for the next event; None once the subscription or the bus is closed and drained."""
        while True:
            if self._closed:
                return None
            event = self._pop()
            if event is not None:
                return event
            if self._ended:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Stop receiving: pending items are discarded and waiting readers get None."""
        self._closed = True
        self._state.clear()
        self._logs.clear()
        self._bus._unsubscribe(self)
        self._wakeup.set()

    def _end(self) -> None:
        """Mark the bus as closed: queued items are still delivered, then iteration stops."""
        self._ended = True
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        """Iterate events until the subscription or the bus closes."""
        return self

    async def __anext__(self) -> Event:
        """Next event, or StopAsyncIteration when closed and drained."""
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventBus:
    """Fans events out to subscribers; publishing is synchronous and never waits on a reader."""

    def __init__(self) -> None:
        """Create a bus with no subscribers."""
        self._subscribers: list[Subscription] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after close(); later publishes are ignored."""
        return self._closed

    def subscribe(self, max_log_batches: int = 1000, run_id: str | None = None) -> Subscription:
        """Register a subscriber, optionally only for one run's events."""
        sub = Subscription(self, max_log_batches, run_id)
        if self._closed:
            sub._end()
        else:
            self._subscribers.append(sub)
        return sub

    def publish(self, event: Event) -> None:
        """Hand an event to every subscriber's queue; returns at once and never raises on overflow."""
        if self._closed:
            return
        for sub in tuple(self._subscribers):
            sub._offer(event)

    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription after it drains what is already queued."""
        self._closed = True
        for sub in self._subscribers:
            sub._end()
        self._subscribers.clear()

    def _unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription that closed itself."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)
