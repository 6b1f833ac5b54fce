"""Which worker drives a run, in the app: the runs table's worker column and the run view's header.

The seed's waiting run is made to be held by a worker on another machine ("buildbox-2:4242:
worker:build-2", its lease far ahead so it is not read as lost) and its interrupted run is made
to wait in the queue for one; its completed run was driven by worker build-1 (its metadata says
so, the lease being gone); the other runs are local (no worker).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import Label
from textual.widgets.data_table import ColumnKey

from config.paths import Paths
from core.liveness import LAST_WORKER
from core.records import Run, RunStatus
from tests.tui.seed import COMPLETED_RUN, FAILED_RUN, INTERRUPTED_RUN, MAIN_RUN, seed
from tests.tui.settle import wait_settled
from tests.tui.shell_support import ShellApp, seeded_runs, top, wait_for
from tui.format import holder_cell, holder_words
from tui.screens.run_view import RunScreen
from tui.screens.runs import RunsScreen, RunsTable

WORKER_OWNER = "buildbox-2:4242:worker:build-2"
LEASE_UNTIL = "2099-11-20T09:31:00.000000Z"  # the liveness check compares with the real clock
WORKERS = ["build-1", "build-2", "queued"]  # the worker cells of the seeded runs, A to Z


def app_with_workers(home: Path, *, workers: bool = True) -> ShellApp:
    db = Paths(home).db
    seed(db)
    if not workers:
        return ShellApp(home)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(
            "UPDATE runs SET lease_owner = ?, lease_expires_at = ?, queued = 1 WHERE id = ?",
            (WORKER_OWNER, LEASE_UNTIL, MAIN_RUN),
        )
        conn.execute("UPDATE runs SET queued = 1 WHERE id = ?", (INTERRUPTED_RUN,))
        # a run a worker drove to its end: the lease is gone, the metadata names the worker
        conn.execute(
            "UPDATE runs SET metadata = ? WHERE id = ?",
            (json.dumps({LAST_WORKER: "buildbox-1:77:worker:build-1"}), COMPLETED_RUN),
        )
    finally:
        conn.close()
    return ShellApp(home)


async def open_main_run(pilot: Pilot[Any], runs: RunsScreen) -> RunScreen:
    """Move the cursor to the worker's run by keyboard and open it."""
    row = [s.run.id for s in runs.summaries].index(MAIN_RUN)
    await pilot.press(*["down"] * row, "enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen), what="the run view")
    view = top(pilot.app, RunScreen)  # type: ignore[arg-type]
    await wait_for(pilot, lambda: view.run is not None, what="the run's state read")
    return view


async def test_worker_column_and_run_header(home: Path) -> None:
    app = app_with_workers(home)
    async with app.run_test(size=(140, 34)) as pilot:
        runs = await seeded_runs(pilot)
        table = runs.query_one(RunsTable)

        def cell(run_id: str) -> str:
            return str(table.get_cell(run_id, "worker"))

        assert cell(MAIN_RUN) == "build-2"
        assert cell(INTERRUPTED_RUN) == "queued"
        assert cell(COMPLETED_RUN) == "build-1"  # the worker that drove it, dimmed
        assert cell(FAILED_RUN) == ""  # a local run names no worker
        assert runs.hidden_columns() == []  # 140 columns hold every column
        view = await open_main_run(pilot, runs)
        head = str(view.query_one("#run-head").render())
        assert "worker build-2 on buildbox-2, lease until 2099-11-20 09:31" in head


async def test_the_worker_column_sorts_by_keyboard(home: Path) -> None:
    app = app_with_workers(home)
    async with app.run_test(size=(140, 34)) as pilot:
        runs = await seeded_runs(pilot)
        table = runs.query_one(RunsTable)
        sorting = runs.query_one("#sorting", Label)

        def order() -> list[str]:
            return [str(table.get_cell_at(Coordinate(row, 8))) for row in range(table.row_count)]

        await pilot.press("s", "s")  # started -> duration -> worker, A to Z, unheld runs last
        await wait_for(pilot, lambda: order()[:3] == WORKERS, what="rows in worker order")
        assert order()[3:] == ["", ""]
        assert str(sorting.render()) == "sorted by worker ↑"
        assert str(table.columns[ColumnKey("worker")].label) == "Worker ↑"
        await pilot.press("S")
        await wait_for(pilot, lambda: order()[:3] == WORKERS[::-1], what="the reversed order")
        assert order()[3:] == ["", ""] and str(sorting.render()) == "sorted by worker ↓"
        await pilot.press("s")  # the worker column is the last: `s` goes round to the task
        await wait_for(pilot, lambda: runs.sort == "task", what="sorting by task")


async def test_worker_column_scrolls_into_view_at_80_columns(home: Path) -> None:
    app = app_with_workers(home)
    async with app.run_test(size=(80, 24)) as pilot:
        runs = await seeded_runs(pilot)
        assert "worker" in runs.hidden_columns()
        await wait_for(
            pilot,
            lambda: "→ shows" in str(runs.query_one("#position").render()),
            what="the bar to say which columns are off screen",
        )
        table = runs.query_one(RunsTable)
        await pilot.press(*["right"] * 70)  # a row cursor scrolls the table sideways
        await wait_for(pilot, lambda: "worker" not in runs.hidden_columns(), what="worker shown")
        assert table.scroll_x > 0


async def test_the_worker_column_comes_when_a_worker_claims_a_run(home: Path) -> None:
    app = app_with_workers(home, workers=False)
    async with app.run_test(size=(140, 34)) as pilot:
        runs = await seeded_runs(pilot)
        labels = [str(column.label) for column in runs.query_one(RunsTable).columns.values()]
        assert "Worker" not in labels and "Task" in labels
        assert not runs.worker_shown
        # A worker claims a run meanwhile (another process's write): the column comes in place.
        conn = sqlite3.connect(Paths(home).db, isolation_level=None)
        try:
            conn.execute(
                "UPDATE runs SET lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                (WORKER_OWNER, LEASE_UNTIL, MAIN_RUN),
            )
        finally:
            conn.close()
        table = runs.query_one(RunsTable)
        await wait_for(pilot, lambda: runs.worker_shown, what="the worker column to come")
        await wait_for(
            pilot,
            lambda: str(table.get_cell(MAIN_RUN, "worker")) == "build-2",
            what="the claimed run's worker",
        )
        assert runs.hidden_columns() == []


def test_runs_table_with_a_worker_column(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await seeded_runs(pilot)
        await wait_settled(pilot)

    assert snap_compare(app_with_workers(home), run_before=run_before, terminal_size=(140, 30))


def test_run_view_names_its_worker(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        view = await open_main_run(pilot, await seeded_runs(pilot))
        await wait_for(
            pilot,
            lambda: "worker build-2" in str(view.query_one("#run-head").render()),
            what="the header naming the worker",
        )
        await wait_settled(pilot)

    assert snap_compare(app_with_workers(home), run_before=run_before, terminal_size=(120, 34))


def test_the_header_words_for_each_kind_of_holder() -> None:
    base = Run(id="r1", task="t", repo="/r", status=RunStatus.EXECUTING, created_at=LEASE_UNTIL)
    held = replace(base, lease_owner=WORKER_OWNER, lease_expires_at=LEASE_UNTIL)
    assert holder_words(held) == "worker build-2 on buildbox-2, lease until 2099-11-20 09:31"
    assert holder_words(replace(held, lost=True)) == (
        "worker build-2 on buildbox-2 (gone: its lease ran out)"
    )
    assert holder_words(replace(base, queued=True)) == "queued for a worker (none holds it yet)"
    done = replace(base, status=RunStatus.COMPLETED, metadata={LAST_WORKER: WORKER_OWNER})
    assert holder_words(done) == "driven by worker build-2 on buildbox-2"
    local = replace(base, lease_owner="laptop:4242:run")  # `orchestrator run` on this machine
    assert holder_words(local) is None and holder_cell(local, 12).plain == ""
