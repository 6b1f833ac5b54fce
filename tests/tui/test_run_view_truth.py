"""The app follows the store's truth about runs it only watches, and closes cleanly.

A run driven by another process (the CLI in a subprocess) publishes nothing on this app's bus, so
only the store tells the app that it was cancelled, finished, failed or lost; the run view and the
runs table must show that, with the asks it withdrew gone.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.widgets import Static

from config.paths import Paths
from core.engine import Engine
from core.records import InterventionStatus, RunStatus
from tests.clirun import cli, cli_json, spawn
from tests.tui.run_view_support import create_demo_run, run_screen, view_ready
from tests.tui.seed import MAIN_RUN, seed
from tests.tui.shell_support import ShellApp, top, wait_for, wait_for_modal, wait_until
from tests.waiting import pending_asks
from tests.waiting import wait_until as wait_until_sync
from tui.modals.intervention import InterventionModal
from tui.screens.run_view import RunScreen
from tui.screens.runs import RunsScreen

SIZE = (130, 40)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_a_run_view_closed_before_its_refresh_started_leaves_no_coroutine(
    home: Path,
) -> None:
    seed(Paths(home).db)
    app = ShellApp(home, initial_run=MAIN_RUN)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: view_ready(app), what="the run view's first read")
        screen = run_screen(app)
        # A read is asked for, then the view's workers are cancelled before it starts, as
        # Textual does when the view closes in the same moment.
        screen.request_refresh()
        screen.workers.cancel_group(screen, "run-refresh")
        await pilot.pause()
        # The view still reads when asked again (the cancelled read does not block the next).
        before = screen.refreshes
        screen.request_refresh()
        await wait_for(pilot, lambda: screen.refreshes > before, what="a read after the cancel")
    gc.collect()  # a never-awaited coroutine warns when collected: here, inside the test


@pytest.fixture
def headless_demo(home: Path) -> Iterator[subprocess.Popen[str]]:
    """`orchestrator demo --headless` in another process; it waits for its risky phase's approval."""
    other = spawn(home, "demo", "--headless")
    try:
        yield other
    finally:
        if other.poll() is None:
            other.kill()
        other.communicate(timeout=60)


class Notices(list[Notification]):
    """The notifications the app showed (a message hook for `run_test`)."""

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.append(message.notification)

    def titled(self, title: str) -> list[Notification]:
        return [n for n in self if n.title == title]


def head(app: ShellApp) -> str:
    return str(run_screen(app).query_one("#run-head", Static).render())


def head_says(app: ShellApp, run_id: str, status: str) -> bool:
    """The header's first words: the run's id and this status (not a word of its repo path)."""
    return head(app).startswith(f"run {run_id}  {status}")


def table_status(app: ShellApp, run_id: str) -> str:
    return str(top(app, RunsScreen).query_one("#runs").get_row(run_id)[2])


async def watch_the_waiting_run(pilot: Pilot[Any], asks: int = 1) -> str:
    """Set the other process's questions aside and open its run from the table; its id."""
    app = pilot.app
    assert isinstance(app, ShellApp)
    run_id = ""
    for _ in range(asks):
        modal = await wait_for_modal(pilot, InterventionModal, focus="approve")
        run_id = modal.item.run_id
        await pilot.press("escape")
        await wait_for(pilot, lambda m=modal: app.screen is not m, what="the question set aside")
    runs = top(app, RunsScreen)
    await wait_for(pilot, lambda: runs.current_run_id == run_id, what="the run in the table")
    await pilot.press("enter")
    await wait_for(pilot, lambda: view_ready(app), what="the run view")
    await wait_for(pilot, lambda: head_says(app, run_id, "waiting"), what="the run waiting")
    assert "waiting for you" in head(app)
    return run_id


async def test_a_watched_run_cancelled_by_another_process_shows_cancelled(
    home: Path, headless_demo: subprocess.Popen[str]
) -> None:
    app, notices = ShellApp(home), Notices()
    async with app.run_test(size=SIZE, message_hook=notices) as pilot:
        run_id = await watch_the_waiting_run(pilot)
        await pilot.press("i")  # the question is open when the cancel withdraws it
        await wait_for_modal(pilot, InterventionModal, focus="approve")

        cancel = cli(home, "cancel", run_id)
        assert cancel.returncode == 0, cancel.stderr
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, RunScreen) and head_says(app, run_id, "cancelled"),
            what="the question closed and the run view saying cancelled",
        )
        shown = head(app)
        assert "cancelled by the user" in shown and "waiting for you" not in shown, shown
        assert not run_screen(app).check_action("answer", ())
        [item] = await app.engine.interventions(run_id)
        assert item.status is InterventionStatus.WITHDRAWN
        assert (await app.engine.get_run(run_id)).status is RunStatus.CANCELLED
        title = f"run {run_id} cancelled"
        await wait_for(pilot, lambda: notices.titled(title), what="the notice of the cancel")
        [notice] = notices.titled(title)
        assert notice.message == "cancelled by the user", notice

        await pilot.press("escape")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, RunsScreen) and "cancelled" in table_status(app, run_id),
            what="the table to show the run cancelled",
        )


async def test_a_watched_run_whose_process_was_killed_shows_interrupted(
    home: Path, headless_demo: subprocess.Popen[str]
) -> None:
    app, notices = ShellApp(home), Notices()
    async with app.run_test(size=SIZE, message_hook=notices) as pilot:
        run_id = await watch_the_waiting_run(pilot)
        headless_demo.kill()
        headless_demo.wait(timeout=60)
        await wait_for(
            pilot,
            lambda: head_says(app, run_id, "interrupted"),
            what="the run view saying interrupted",
        )
        shown = head(app)
        assert "is gone" in shown and f"orchestrator resume {run_id}" in shown, shown
        # Its question can still be answered before resuming, but the run no longer waits.
        assert "waiting for you" not in shown and "still asks you" in shown, shown
        assert "press i to answer before resuming" in shown, shown
        assert (await app.engine.get_run(run_id)).status is RunStatus.INTERRUPTED
        [item] = await app.engine.interventions(run_id)
        assert item.status is InterventionStatus.PENDING
        title = f"run {run_id} interrupted"
        await wait_for(pilot, lambda: notices.titled(title), what="the notice of the lost run")
        [notice] = notices.titled(title)
        assert "is gone" in notice.message and "R resumes it here" in notice.message, notice

        await pilot.press("escape")
        await wait_for(
            pilot,
            lambda: (
                isinstance(app.screen, RunsScreen) and "interrupted" in table_status(app, run_id)
            ),
            what="the table to show the run interrupted",
        )


@pytest.fixture
async def other_engine(home: Path) -> AsyncIterator[Engine]:
    """A second engine on the same home: the app's bus hears nothing of what it drives."""
    engine = await Engine.open(Paths(home))
    try:
        yield engine
    finally:
        await engine.close()


async def test_a_watched_run_completed_by_another_engine_shows_completed(
    home: Path, tmp_path: Path, other_engine: Engine
) -> None:
    run = await create_demo_run(other_engine, tmp_path / "demo")
    driving = asyncio.create_task(other_engine.execute_run(run.id))
    try:
        [ask] = await pending_asks(other_engine, run.id, driving)
        app = ShellApp(home)
        async with app.run_test(size=SIZE) as pilot:
            assert await watch_the_waiting_run(pilot) == run.id
            await other_engine.resolve_intervention(ask.id, approve=True)
            await wait_until(
                pilot,
                lambda: _status_is(other_engine, run.id, RunStatus.COMPLETED),
                what="the run to complete",
            )
            await wait_for(
                pilot,
                lambda: head_says(app, run.id, "completed"),
                what="the run view saying completed",
            )
            shown = head(app)
            assert "read-only" in shown and "waiting for you" not in shown, shown
            await pilot.press("escape")
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, RunsScreen) and "completed" in table_status(app, run.id)
                ),
                what="the table to show the run completed",
            )
        assert (await driving).status is RunStatus.COMPLETED
    finally:
        if not driving.done():
            driving.cancel()
            await asyncio.gather(driving, return_exceptions=True)


async def _status_is(engine: Engine, run_id: str, status: RunStatus) -> bool:
    return (await engine.get_run(run_id)).status is status


async def test_a_watched_run_that_fails_in_another_process_shows_failed(home: Path) -> None:
    """One attempt a phase: the demo's phase-002 fails its first verification and asks what to
    do; both asks are rejected from the shell, so the other process ends the run failed."""
    other = spawn(home, "demo", "--headless", ORCHESTRATOR__EXECUTION__MAX_ATTEMPTS="1")
    try:

        def asks() -> list[dict[str, Any]]:
            found = cli_json(home, "interventions", "--pending")
            return found if len(found) == 2 else []

        pending = wait_until_sync(asks, what="the risk and the failed-phase questions", step=0.5)
        app, notices = ShellApp(home), Notices()
        async with app.run_test(size=SIZE, message_hook=notices) as pilot:
            run_id = await watch_the_waiting_run(pilot, asks=2)
            for item in pending:
                rejected = cli(home, "reject", item["id"])
                assert rejected.returncode == 0, rejected.stderr
            await wait_for(
                pilot, lambda: head_says(app, run_id, "failed"), what="the run view saying failed"
            )
            run = await app.engine.get_run(run_id)
            assert run.status is RunStatus.FAILED and run.error
            shown = head(app)
            assert "waiting for you" not in shown and run.error.splitlines()[0] in shown, shown
            title = f"run {run_id} failed"
            await wait_for(pilot, lambda: notices.titled(title), what="the notice of the failure")
            await pilot.press("escape")
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, RunsScreen) and "failed" in table_status(app, run_id)
                ),
                what="the table to show the run failed",
            )
        out, err = other.communicate(timeout=120)
        assert other.returncode == 1, (out, err)
    finally:
        if other.poll() is None:
            other.kill()
            other.communicate(timeout=60)
