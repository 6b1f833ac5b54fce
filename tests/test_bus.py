"""EventBus back-pressure rules and the Journal's persist-then-publish contract."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.bus import MAX_COALESCED_LINES, EventBus, Subscription
from core.events import (
    Event,
    LogEmitted,
    PhaseStatusChanged,
    RunCreated,
    RunStatusChanged,
    is_state_event,
)
from core.journal import Journal
from core.records import LogRecord
from core.state.store import StateStore


def batch(run_id: str, *messages: str, start: int = 0) -> LogEmitted:
    """A LogEmitted with one line per message."""
    lines = tuple(
        LogRecord(start + i, run_id, None, "2026-01-01T00:00:00.000000Z", "info", m)
        for i, m in enumerate(messages)
    )
    return LogEmitted(run_id=run_id, lines=lines)


def status(n: int, run_id: str = "r1") -> RunStatusChanged:
    """A state event numbered through its error text."""
    return RunStatusChanged(run_id=run_id, status="executing", error=str(n))


def drain(sub: Subscription) -> list[Event]:
    """Everything queued right now, in delivery order."""
    out: list[Event] = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    """A fresh store in a temporary directory."""
    async with await StateStore.open(tmp_path / "state.db") as s:
        yield s


def test_state_and_log_events_are_classified() -> None:
    assert is_state_event(status(1))
    assert is_state_event(RunCreated(run_id="r", task="t", repo="/x"))
    assert not is_state_event(batch("r", "x"))


async def test_stalled_subscriber_never_blocks_and_never_loses_state_events() -> None:
    bus = EventBus()
    stalled = bus.subscribe(max_log_batches=10)
    published_lines = 0
    for i in range(5000):
        bus.publish(status(i))  # a state event between every batch prevents coalescing
        bus.publish(batch("r1", *(f"{i}.{k}" for k in range(3))))
        published_lines += 3
    assert stalled.pending() == 5000 + 10  # every state event, at most 10 log batches
    events = drain(stalled)
    states = [e for e in events if isinstance(e, RunStatusChanged)]
    assert [e.error for e in states] == [str(i) for i in range(5000)]
    delivered = sum(len(e.lines) for e in events if isinstance(e, LogEmitted))
    assert delivered == 30 and stalled.dropped_log_lines == published_lines - delivered
    # What survives is the newest lines, each still after the state event published before it.
    assert [type(e).__name__ for e in events[-4:]] == [
        "RunStatusChanged",
        "LogEmitted",
        "RunStatusChanged",
        "LogEmitted",
    ]
    last = events[-1]
    assert isinstance(last, LogEmitted) and last.lines[-1].message == "4999.2"


async def test_adjacent_log_batches_coalesce_instead_of_dropping() -> None:
    bus = EventBus()
    sub = bus.subscribe(max_log_batches=2)
    for i in range(10):
        bus.publish(batch("r1", f"line {i}", start=i))
    events = drain(sub)
    assert len(events) == 2 and sub.dropped_log_lines == 0
    lines = [line.message for e in events if isinstance(e, LogEmitted) for line in e.lines]
    assert lines == [f"line {i}" for i in range(10)]


async def test_coalescing_stops_at_the_size_cap_and_then_drops_oldest() -> None:
    bus = EventBus()
    sub = bus.subscribe(max_log_batches=1)
    bus.publish(batch("r1", *(["x"] * MAX_COALESCED_LINES)))
    bus.publish(batch("r1", "y"))
    events = drain(sub)
    assert sub.dropped_log_lines == MAX_COALESCED_LINES
    assert len(events) == 1 and isinstance(events[0], LogEmitted)
    assert [line.message for line in events[0].lines] == ["y"]


async def test_batches_of_different_runs_are_not_merged() -> None:
    bus = EventBus()
    sub = bus.subscribe(max_log_batches=1)
    bus.publish(batch("r1", "a"))
    bus.publish(batch("r2", "b"))
    events = drain(sub)
    assert [e.run_id for e in events] == ["r2"] and sub.dropped_log_lines == 1


async def test_order_is_preserved_across_state_and_log_events() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    sequence: list[Event] = []
    for i in range(50):
        sequence.append(status(i) if i % 3 else batch("r1", f"l{i}"))
    for event in sequence:
        bus.publish(event)
    assert drain(sub) == sequence


async def test_run_filter_and_multiple_subscribers() -> None:
    bus = EventBus()
    everything = bus.subscribe()
    only_r2 = bus.subscribe(run_id="r2")
    bus.publish(status(1, "r1"))
    bus.publish(status(2, "r2"))
    bus.publish(batch("r2", "x"))
    assert len(drain(everything)) == 3
    assert [e.run_id for e in drain(only_r2)] == ["r2", "r2"]


async def test_waiting_reader_wakes_and_bus_close_ends_after_draining() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    seen: list[Event] = []

    async def consume() -> None:
        async for event in sub:
            seen.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let the reader block on an empty queue
    bus.publish(status(1))
    bus.publish(status(2))
    bus.close()
    await asyncio.wait_for(task, 5)
    assert [e.error for e in seen] == ["1", "2"]  # type: ignore[attr-defined]
    assert await sub.get() is None and sub.closed
    bus.publish(status(3))  # ignored after close
    late = bus.subscribe()
    assert await late.get() is None


async def test_subscription_close_discards_and_unsubscribes() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(waiter, 5) is None
    bus.publish(status(1))
    assert bus.subscriber_count() == 0 and sub.pending() == 0


# -- journal -----------------------------------------------------------------------------------


async def test_journal_persists_before_publishing(store: StateStore, tmp_path: Path) -> None:
    bus = EventBus()
    journal = Journal(store, bus, flush_interval=0.01, max_batch=100)
    runs = [await store.create_run(f"t{i}", str(tmp_path), {}) for i in range(2)]
    sub = bus.subscribe()
    await journal.start()
    checked = 0
    total = 1000

    async def consume() -> None:
        nonlocal checked
        async for event in sub:
            assert isinstance(event, LogEmitted)
            # At the moment the event arrives, every line in it is already readable.
            first = event.lines[0].seq
            stored = await store.get_logs(event.run_id, after_seq=first - 1, limit=len(event.lines))
            assert stored == list(event.lines)
            checked += len(event.lines)
            if checked == total:
                return

    consumer = asyncio.create_task(consume())
    for i in range(total):
        journal.log(runs[i % 2].id, None, "info", f"line {i}")
        if i % 250 == 0:
            await asyncio.sleep(0)  # let the writer run while lines keep coming
    await asyncio.wait_for(consumer, 30)
    await journal.stop()
    assert await store.count_logs(runs[0].id) == await store.count_logs(runs[1].id) == total // 2
    messages = [r.message for r in await store.get_logs(runs[0].id, limit=total)]
    assert messages == [f"line {i}" for i in range(0, total, 2)]


async def test_emit_publishes_after_earlier_log_lines(store: StateStore, tmp_path: Path) -> None:
    bus = EventBus()
    journal = Journal(store, bus, flush_interval=60)  # only explicit flushes write
    run = await store.create_run("t", str(tmp_path), {})
    sub = bus.subscribe()
    journal.log(run.id, "p1", "INFO", "phase starting")
    event = PhaseStatusChanged(
        run_id=run.id, phase_id="p1", plan_id="phase-001", status="completed"
    )
    await journal.emit(event)
    assert drain(sub) == []  # the event waits for the line logged before it to be stored
    await journal.flush()
    first, second = drain(sub)
    assert isinstance(first, LogEmitted) and first.lines[0].message == "phase starting"
    assert first.lines[0].level == "info" and first.lines[0].phase_id == "p1"
    assert second == event
    later = PhaseStatusChanged(run_id=run.id, phase_id="p1", plan_id="phase-001", status="failed")
    await journal.emit(later)  # no line waiting: published at once
    assert drain(sub) == [later]


async def test_stop_flushes_everything_buffered(store: StateStore, tmp_path: Path) -> None:
    bus = EventBus()
    journal = Journal(store, bus, flush_interval=60, max_batch=7)
    run = await store.create_run("t", str(tmp_path), {})
    sub = bus.subscribe()
    await journal.start()
    for i in range(20):
        journal.log(run.id, None, "debug", f"m{i}")
    await journal.stop()
    assert await store.count_logs(run.id) == 20
    lines = [line for e in drain(sub) if isinstance(e, LogEmitted) for line in e.lines]
    assert [line.message for line in lines] == [f"m{i}" for i in range(20)]


async def test_log_lines_are_mirrored_to_python_logging(
    store: StateStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(store, EventBus())
    run = await store.create_run("t", str(tmp_path), {})
    # Attached to the logger itself: an engine opened earlier in this process stops the
    # `orchestrator` loggers propagating to the root logger, where caplog listens.
    mirrored = logging.getLogger("orchestrator.run")
    mirrored.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="orchestrator.run"):
            journal.log(run.id, None, "warning", "disk nearly full")
    finally:
        mirrored.removeHandler(caplog.handler)
    record = next(r for r in caplog.records if r.name == "orchestrator.run")
    assert record.levelno == logging.WARNING and record.getMessage() == "disk nearly full"
    assert record.run_id == run.id  # type: ignore[attr-defined]
    await journal.flush()
    assert await store.count_logs(run.id) == 1
