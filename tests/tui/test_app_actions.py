"""Runs of other processes watched and answered from the app; export, apply and clean up; budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from config.paths import Paths
from core.engine import Engine
from core.records import InterventionStatus, RunStatus
from tests.clirun import ROOT, cli_env, spawn
from tests.conftest import git
from tests.tui.seed import MAIN_RUN, seed
from tests.tui.shell_support import ShellApp, top, wait_for, wait_for_modal, wait_until
from tui.modals.confirm import ConfirmModal
from tui.modals.export import ExportModal
from tui.modals.intervention import InterventionModal
from tui.screens.new_run import NewRunScreen
from tui.screens.run_view import RunScreen
from tui.screens.runs import RunsScreen

SIZE = (130, 40)


async def test_a_headless_run_in_another_process_is_watched_and_approved_here(home: Path) -> None:
    other = spawn(home, "demo", "--headless")  # waits for its approval
    try:
        app = ShellApp(home)
        async with app.run_test(size=SIZE) as pilot:
            modal = await wait_for_modal(pilot, InterventionModal, focus="approve")
            run_id = modal.item.run_id
            runs = app.screen_stack[0]
            assert isinstance(runs, RunsScreen)
            await wait_for(
                pilot,
                lambda: "waiting" in str(runs.query_one("#runs").get_row(run_id)[2]),
                what="the table to show the other process's run waiting",
            )
            await pilot.press("a")
            out, err = other.communicate(timeout=120)
            assert other.returncode == 0, err
            assert f"run {run_id} completed" in out
            # The table re-reads the store, so the other process's result shows up here.
            await wait_for(
                pilot,
                lambda: "completed" in str(runs.query_one("#runs").get_row(run_id)[2]),
                what="the table to show the run completed",
            )
            [item] = await app.engine.interventions(run_id)
            assert item.status is InterventionStatus.APPROVED
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


async def test_export_to_a_file_the_user_names(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative file names are typed (short, so quick to type)
    seed(Paths(home).db)
    out = tmp_path / "exports"
    out.mkdir()
    app = ShellApp(home)
    app.work_dir = out
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("escape")
        runs = top(app, RunsScreen)
        await wait_for(pilot, lambda: runs.current_run_id == MAIN_RUN, what="the runs table")
        await pilot.press("E")
        await wait_for_modal(pilot, ExportModal, focus="path")
        await pilot.press("enter")  # the suggested file: <work dir>/<run id>.md
        await wait_for(pilot, lambda: (out / f"{MAIN_RUN}.md").exists(), what="the markdown")
        assert (out / f"{MAIN_RUN}.md").read_text().startswith("# ")

        await pilot.press("E")
        modal = await wait_for_modal(pilot, ExportModal, focus="path")
        await pilot.press("shift+tab", "right", "enter")  # the format: JSON
        await wait_for(pilot, lambda: modal.fmt == "json", what="JSON picked")
        assert modal.query_one("#path", Input).value.endswith(f"{MAIN_RUN}.json")
        await pilot.press("tab", "ctrl+u", *"exports/nowhere/x.json", "enter")
        assert "does not exist" in str(modal.query_one("#error").render())
        await pilot.press("ctrl+u", *"exports/summary.json", "enter")
        await wait_for(pilot, lambda: (out / "summary.json").exists(), what="the JSON")
        assert json.loads((out / "summary.json").read_text())["id"] == MAIN_RUN


async def test_apply_and_clean_up_a_completed_run(home: Path) -> None:
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "ctrl+o")
        form = top(app, NewRunScreen)
        await wait_for(pilot, lambda: form.provider == "replay", what="the demo values")
        form.query_one("#yes").focus()
        await pilot.press("space", "ctrl+s")  # --yes: the risky phase is approved as it comes

        async def one_completed() -> bool:
            found = await app.engine.runs_page(status="completed")
            return len(found) == 1

        await wait_until(pilot, one_completed, what="the run to complete")
        [summary] = await app.engine.runs_page()
        run = summary.run
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        await pilot.press("escape", "escape")  # the run view, then the form
        runs = top(app, RunsScreen)
        await wait_for(pilot, lambda: runs.current_run_id == run.id, what="the run in the table")

        await pilot.press("A")
        await wait_for_modal(pilot, ConfirmModal, focus="back")
        await pilot.press("y")
        repo = Path(run.repo)

        def applied() -> bool:
            log = git(repo, "log", "--format=%B", "main")
            return f"Orchestrator-Run: {run.id}" in log

        await wait_for(pilot, applied, what="the run's commits on main")

        await pilot.press("X")
        await wait_for_modal(pilot, ConfirmModal, focus="back")
        await pilot.press("y")

        async def cleaned() -> bool:
            return bool((await app.engine.get_run(run.id)).metadata.get("cleaned"))

        await wait_until(pilot, cleaned, what="the clean up")
        assert run.branch not in git(repo, "branch", "--list")
        assert (await app.engine.get_run(run.id)).status is RunStatus.COMPLETED


async def _budget_item(app: ShellApp) -> Any:
    return await app.engine.store.create_intervention(
        MAIN_RUN,
        None,
        "budget",
        "the run spent $2.10 of its $2.00 budget",
        "approve: continue with a new budget; reject: stop the run",
        payload={"scope": "run", "metric": "cost_usd", "limit": 2.0},
    )


async def test_a_budget_is_raised_from_the_modal(home: Path) -> None:
    seed(Paths(home).db, rich=True)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("escape")
        item = await _budget_item(app)
        modal = await wait_for_modal(pilot, InterventionModal, focus="approve")
        assert modal.item.id == item.id
        modal.query_one("#budget-usd", Input).focus()
        await pilot.press(*"5.5", "tab", *"200000", "enter")
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("a")

        async def answered() -> bool:
            [stored] = [i for i in await app.engine.interventions(MAIN_RUN) if i.id == item.id]
            return stored.status is InterventionStatus.APPROVED

        await wait_until(pilot, answered, what="the decision")
        run = await app.engine.get_run(MAIN_RUN)
        assert run.metadata["budget"] == {"run": {"cost_usd": 5.5, "tokens": 200000}}


def test_no_command_without_a_terminal_says_what_to_do(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli"],
        cwd=ROOT,
        env=cli_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 2
    assert "the terminal UI needs a terminal" in proc.stderr


async def test_quitting_while_a_run_is_driven_asks_then_interrupts_it(home: Path) -> None:
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "ctrl+o")
        form = top(app, NewRunScreen)
        await wait_for(pilot, lambda: form.provider == "replay", what="the demo values")
        await pilot.press("ctrl+s")
        modal = await wait_for_modal(pilot, InterventionModal, focus="approve")
        run_id = modal.item.run_id
        await pilot.press("ctrl+q")
        await wait_for_modal(pilot, ConfirmModal, focus="back")
        await pilot.press("n")  # stay: nothing changes
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        assert (await app.engine.get_run(run_id)).status is RunStatus.WAITING
        await pilot.press("ctrl+q")
        confirm = await wait_for_modal(pilot, ConfirmModal, focus="back")
        body = " ".join(str(w.render()) for w in confirm.query("Static"))
        assert f"run {run_id} stops and is marked interrupted; resume it later" in body
        await pilot.press("y")
        await wait_for(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == 0
    # What the CLI prints once the terminal is back.
    assert app.exit_notes() == [
        f"run {run_id} was interrupted; resume it with: orchestrator resume {run_id}"
    ]
    engine = await Engine.open(Paths(home))
    try:
        run = await engine.get_run(run_id)
        assert run.status is RunStatus.INTERRUPTED and run.lease_owner is None
    finally:
        await engine.close()
