"""The live log widget on its own, in a small app, reading a real store through the engine."""

from __future__ import annotations

import functools
from typing import Any

from textual.app import App, ComposeResult

from core.engine import Engine
from core.records import LogRecord
from tests.tui.run_view_support import wait_for
from tui.widgets.log_view import LiveLog, LogPane


class LogApp(App[None]):
    def __init__(self, engine: Engine, run_id: str, **kwargs: Any) -> None:
        super().__init__()
        self.pane = LogPane(functools.partial(engine.log_page, run_id), **kwargs)

    def compose(self) -> ComposeResult:
        yield self.pane


async def _run_with_lines(engine: Engine, n: int) -> tuple[str, list[LogRecord]]:
    run = await engine.store.create_run("log widget", "/tmp", {})
    for i in range(n):
        engine.journal.log(run.id, None, "info", f"line {i}")
    await engine.journal.flush()
    return run.id, await engine.logs(run.id, limit=n + 10)


async def test_live_lines_are_appended_once_and_memory_stays_bounded(engine: Engine) -> None:
    run_id, stored = await _run_with_lines(engine, 50)
    app = LogApp(engine, run_id, max_lines=200, page=100)
    async with app.run_test(size=(100, 20)) as pilot:
        log = app.query_one(LiveLog)
        await wait_for(pilot, lambda: len(log.records) == 50 and not log.busy, what="first page")
        assert log.has_older is False

        # Lines arrive from the bus and again from a poll: each shows once, in order.
        more = [
            LogRecord(stored[-1].seq + i + 1, run_id, None, stored[-1].ts, "info", f"new {i}")
            for i in range(500)
        ]
        for start in range(0, 500, 50):
            assert log.feed(more[start : start + 50]) == 50
        assert log.feed(more[100:300]) == 0
        assert len(log.records) == 200  # bounded
        assert [r.seq for r in log.records] == [r.seq for r in more[-200:]]
        assert log.has_older and log.follow and log.at_tail
        assert log.shown_lines[-1].endswith("new 499")

        # Paused on a full window, new lines wait in the store instead of moving the view.
        log.focus()
        await wait_for(pilot, lambda: log.has_focus, what="focus")
        await pilot.press("p")
        assert not log.follow
        before = list(log.records)
        newer = [
            LogRecord(more[-1].seq + i + 1, run_id, None, stored[-1].ts, "info", f"later {i}")
            for i in range(10)
        ]
        assert log.feed(newer) == 0
        assert log.records == before and not log.at_tail
        status = app.query_one("#log-status")
        await wait_for(
            pilot, lambda: "newer lines below" in str(status.render()), what="the status line"
        )
        assert str(status.render()).startswith("paused")


async def test_scroll_back_reads_earlier_pages_and_end_follows(engine: Engine) -> None:
    run_id, stored = await _run_with_lines(engine, 1000)
    app = LogApp(engine, run_id, max_lines=300, page=100)
    async with app.run_test(size=(100, 20)) as pilot:
        log = app.query_one(LiveLog)
        await wait_for(pilot, lambda: len(log.records) == 100 and not log.busy, what="tail")
        assert log.records[0].seq == stored[-100].seq and log.has_older
        log.focus()
        await wait_for(pilot, lambda: log.has_focus, what="focus")

        await pilot.press("pageup")  # within the window
        for _ in range(30):
            await pilot.press("pageup")
            await wait_for(pilot, lambda: not log.busy, what="older page")
        assert log.records[0].seq < stored[-100].seq
        assert len(log.records) <= 300
        seqs = [r.seq for r in log.records]
        stored_seqs = [r.seq for r in stored]
        start = stored_seqs.index(seqs[0])
        assert seqs == stored_seqs[start : start + len(seqs)]  # a contiguous stretch

        await pilot.press("end")
        await wait_for(pilot, lambda: log.follow and log.at_tail and not log.busy, what="tail")
        assert log.records[-1].seq == stored[-1].seq


async def test_filter_field_searches_the_store_and_esc_clears(engine: Engine) -> None:
    run_id, _ = await _run_with_lines(engine, 600)
    app = LogApp(engine, run_id, max_lines=200, page=100)
    async with app.run_test(size=(100, 20)) as pilot:
        log = app.query_one(LiveLog)
        await wait_for(pilot, lambda: len(log.records) == 100 and not log.busy, what="tail")
        log.focus()
        await wait_for(pilot, lambda: log.has_focus, what="focus")
        await pilot.press("slash", *"LINE 7", "enter")  # any case
        await wait_for(pilot, lambda: log.filter_text == "LINE 7" and not log.busy, what="filter")
        assert log.shown_lines and all("line 7" in line for line in log.shown_lines)
        assert {line.split()[-1] for line in log.shown_lines} == {"7", *map(str, range(70, 80))}
        await wait_for(pilot, lambda: log.has_focus, what="focus back on the log")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not log.filter_text and not log.busy, what="cleared")
        assert len(log.records) == 100


async def test_the_status_line_counts_one_line_in_the_singular(engine: Engine) -> None:
    run_id, _ = await _run_with_lines(engine, 1)
    app = LogApp(engine, run_id, max_lines=200, page=100)
    async with app.run_test(size=(100, 20)) as pilot:
        status = app.query_one("#log-status")
        await wait_for(pilot, lambda: "1 line held" in str(status.render()), what="the status line")
        assert "lines held" not in str(status.render())
