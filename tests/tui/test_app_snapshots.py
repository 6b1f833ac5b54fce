"""Snapshots of the shell's screens and modals on the realistic seed data, driven by the keyboard.

The seed's waiting run has a pending intervention, so its modal comes up at start; screens under
it are shot after Esc sets it aside. Regenerate with `pytest tests/tui --snapshot-update` and look
at the SVGs (tests/tui/__snapshots__/) after any change to textual or to these screens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from config.paths import Paths
from tests.tui.seed import FAILED_RUN, seed
from tests.tui.settle import wait_settled
from tests.tui.shell_support import ShellApp, seeded_runs, wait_for, wait_for_modal
from tui.modals.intervention import InterventionModal
from tui.modals.run_stopped import RunStoppedModal
from tui.screens.interventions import InterventionsScreen
from tui.screens.runs import RunsScreen

SIZE = (120, 34)
WORK_DIR = Path("/home/dev/src/inventory-service")

Before = Callable[[Pilot[Any]], Awaitable[None]]


def app_on(home: Path) -> ShellApp:
    seed(Paths(home).db)
    app = ShellApp(home)
    app.work_dir = WORK_DIR
    return app


def then(*keys: str, until: Callable[[Pilot[Any]], bool] | None = None) -> Before:
    """run_before: runs ready, then press `keys`, then wait for `until`."""

    async def before(pilot: Pilot[Any]) -> None:
        await seeded_runs(pilot)
        await pilot.press(*keys)
        if until is not None:
            await wait_for(pilot, lambda: until(pilot), what="the screen after the keys")
        await wait_settled(pilot)

    return before


def test_runs_screen(snap_compare: Any, home: Path) -> None:
    assert snap_compare(app_on(home), run_before=then(), terminal_size=SIZE)


def test_runs_screen_filtered(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await seeded_runs(pilot)
        await pilot.press("slash", *"inventory", "enter", "down")
        await wait_for(pilot, lambda: filtered_to(pilot, 4), what="the filter")
        await wait_settled(pilot)

    assert snap_compare(app_on(home), run_before=run_before, terminal_size=SIZE)


def filtered_to(pilot: Pilot[Any], n: int) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, RunsScreen) and len(screen.summaries) == n


def test_intervention_modal(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for_modal(pilot, InterventionModal, focus="approve")

    assert snap_compare(app_on(home), run_before=run_before, terminal_size=SIZE)


def test_intervention_modal_with_a_note(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("n")
        await wait_for_modal(pilot, InterventionModal, focus="note")
        await pilot.press(*"ship it after the demo", "enter")
        await wait_for_modal(pilot, InterventionModal, focus="approve")

    assert snap_compare(app_on(home), run_before=run_before, terminal_size=(80, 24))


def test_interventions_screen(snap_compare: Any, home: Path) -> None:
    def listed(pilot: Pilot[Any]) -> bool:
        screen = pilot.app.screen
        return isinstance(screen, InterventionsScreen) and len(screen.items) == 2

    assert snap_compare(app_on(home), run_before=then("2", until=listed), terminal_size=SIZE)


def form_steady(pilot: Pilot[Any]) -> bool:
    """The form's first field has the focus, its cursor shown steadily (a blink would race the shot)."""
    focused = pilot.app.focused
    if not isinstance(focused, Input) or focused.id != "task":
        return False
    focused.cursor_blink = False
    return True


def test_new_run_form(snap_compare: Any, home: Path) -> None:
    assert snap_compare(app_on(home), run_before=then("3", until=form_steady), terminal_size=SIZE)


def test_new_run_form_says_what_is_wrong(snap_compare: Any, home: Path) -> None:
    def errors_shown(pilot: Pilot[Any]) -> bool:
        shown = "Task:" in str(pilot.app.screen.query_one("#errors").render())
        return shown and form_steady(pilot)

    before = then("3", "ctrl+s", until=errors_shown)
    assert snap_compare(app_on(home), run_before=before, terminal_size=SIZE)


def test_cancel_confirm(snap_compare: Any, home: Path) -> None:
    before = then("C", until=lambda pilot: type(pilot.app.screen).__name__ == "ConfirmModal")
    assert snap_compare(app_on(home), run_before=before, terminal_size=SIZE)


def test_export_modal(snap_compare: Any, home: Path) -> None:
    before = then("E", until=lambda pilot: type(pilot.app.screen).__name__ == "ExportModal")
    assert snap_compare(app_on(home), run_before=before, terminal_size=SIZE)


def test_help_modal(snap_compare: Any, home: Path) -> None:
    before = then("question_mark", until=lambda p: type(p.app.screen).__name__ == "HelpModal")
    assert snap_compare(app_on(home), run_before=before, terminal_size=SIZE)


def test_run_stopped_modal(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await seeded_runs(pilot)
        app = pilot.app
        assert isinstance(app, ShellApp)
        # The modal a run driven here shows when it fails; the seeded failed run stands in.
        app.push_screen(RunStoppedModal(await app.engine.get_run(FAILED_RUN)))
        await wait_for_modal(pilot, RunStoppedModal, focus="resume")

    assert snap_compare(app_on(home), run_before=run_before, terminal_size=SIZE)
