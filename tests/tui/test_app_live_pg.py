"""The app follows runs of other machines through PostgreSQL's NOTIFY: the app on home A, opened on
`--db URL`, with its polling timers slowed to once an hour, still sees a run that a process on
home B drives (the run in the list, its pending intervention as a modal, new log lines), and its
approval reaches home B's run, which polls every ten minutes itself, through LISTEN."""

from __future__ import annotations

import asyncio
from pathlib import Path

from config.paths import Paths
from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.engine import Engine
from core.records import RunStatus
from tests.clirun import cli, cli_json, spawn
from tests.pg_support import PgServer
from tests.tui.run_view_support import HomeApp, run_screen, view_ready, wait_for
from tui.modals.intervention import InterventionModal
from tui.screens.run_view import RunScreen
from tui.screens.runs import RunsScreen

# Far longer than the test: what the app shows after its first reads came through NOTIFY.
NO_POLLING = 3600.0


async def test_the_app_follows_another_machines_run_and_its_approval_reaches_it(
    tmp_path: Path, pg_url: str
) -> None:
    app_home, worker_home = tmp_path / "machine-a", tmp_path / "machine-b"
    app = HomeApp(app_home, db_url=pg_url, fallback_poll_seconds=NO_POLLING)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, app.engine.hears_changes, what="the app's LISTEN connection")
        runs = app.screen
        assert isinstance(runs, RunsScreen) and runs.summaries == []
        proc = spawn(
            worker_home,
            "--db",
            pg_url,
            "demo",
            "--headless",
            ORCHESTRATOR__EXECUTION__POLL_SECONDS="600",
        )
        try:
            assert proc.stdout is not None
            first = await asyncio.to_thread(proc.stdout.readline)
            run_id = first.split()[1]

            # The run, then its question, show up on home A without any polling.
            await wait_for(
                pilot,
                lambda: [s.run.id for s in runs.summaries] == [run_id],
                what=f"run {run_id} of machine B in the runs list",
            )
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, InterventionModal),
                what="machine B's pending intervention as a modal",
                timeout=120,
            )
            modal = app.screen
            assert isinstance(modal, InterventionModal) and modal.item.run_id == run_id
            await pilot.press("escape")  # set aside, to watch the run wait on it first
            await wait_for(pilot, lambda: app.screen is runs, what="the runs list again")
            await pilot.press("enter")
            await wait_for(pilot, lambda: view_ready(app), what=f"the view of run {run_id}")
            view = run_screen(app)
            assert view.run is not None and view.run.status is RunStatus.WAITING
            lines_before = len(view.live_log.shown_lines)
            assert lines_before > 0, "the view shows what machine B logged so far"

            # The approval given here wakes machine B's run, whose new lines and end show here.
            await pilot.press("i")
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, InterventionModal),
                what="the intervention's modal again",
            )
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
            await wait_for(
                pilot,
                lambda: len(view.live_log.shown_lines) > lines_before,
                what="machine B's log lines after the approval",
                timeout=120,
            )
            await wait_for(
                pilot,
                lambda: view.run is not None and view.run.status is RunStatus.COMPLETED,
                what=f"run {run_id} completed, as machine B drove it",
                timeout=240,
            )
            out, err = await asyncio.to_thread(proc.communicate, timeout=240)
            assert proc.returncode == 0, out + err
            assert app.store_wakes > 0
        finally:
            if proc.poll() is None:
                proc.kill()
                await asyncio.to_thread(proc.communicate, timeout=60)

    [answered] = cli_json(worker_home, "--db", pg_url, "interventions")
    assert answered["status"] == "approved"


async def test_a_run_submitted_and_cancelled_on_another_machine_shows_at_once(
    tmp_path: Path, pg_url: str
) -> None:
    repo = prepare_demo_repo(tmp_path / "demo")
    elsewhere = tmp_path / "machine-b"
    app = HomeApp(tmp_path / "machine-a", db_url=pg_url, fallback_poll_seconds=NO_POLLING)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, app.engine.hears_changes, what="the app's LISTEN connection")
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        submit = ["submit", DEMO_TASK, "--repo", str(repo), "--provider", "replay"]
        submit += ["--replay", str(cassette_path())]
        submitted = await asyncio.to_thread(cli, elsewhere, "--db", pg_url, *submit, check=True)
        run_id = submitted.stdout.split()[1]

        def status() -> str | None:
            found = [s.run.status for s in runs.summaries if s.run.id == run_id]
            return str(found[0]) if found else None

        await wait_for(pilot, lambda: status() == "pending", what=f"submitted run {run_id}")
        await asyncio.to_thread(cli, elsewhere, "--db", pg_url, "cancel", run_id, check=True)
        await wait_for(pilot, lambda: status() == "cancelled", what=f"run {run_id} cancelled")


async def test_while_the_listen_connection_is_down_the_app_polls_again(
    tmp_path: Path, pg_server: PgServer, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    app = HomeApp(tmp_path / "machine-a", db_url=pg_url, fallback_poll_seconds=NO_POLLING)
    async with (
        await Engine.open(Paths(tmp_path / "machine-b", db_url=pg_url)) as elsewhere,
        app.run_test(size=(160, 45)) as pilot,
    ):
        await wait_for(pilot, app.engine.hears_changes, what="the app's LISTEN connection")
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await elsewhere.store.count_runs()  # machine B's pooled connection is open already
        # No new connection may reach the database, and the app's LISTEN connection is cut.
        pg_server.sql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        try:
            pg_server.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{database}' AND query LIKE 'LISTEN%'"
            )
            await wait_for(
                pilot, lambda: not app.engine.hears_changes(), what="the LISTEN connection lost"
            )
            assert app.poll_due("a timer"), "deaf: the timers poll at their own pace"
            created = await elsewhere.store.create_run("made while deaf", str(tmp_path), {})
            await wait_for(
                pilot,
                lambda: [s.run.id for s in runs.summaries] == [created.id],
                what=f"run {created.id} read by polling while LISTEN is down",
            )
        finally:
            pg_server.sql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        await wait_for(pilot, app.engine.hears_changes, what="LISTEN connected again")
        assert not app.poll_due("another timer"), "hearing again: NOTIFY wakes the screens"
