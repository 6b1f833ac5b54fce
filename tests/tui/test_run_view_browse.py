"""The run view on the seed's waiting run (2,500 log lines, more than the live log holds), driven
by the keyboard: filter the log, scroll back into the store's history, filter findings by severity."""

from __future__ import annotations

import re

from core.engine import Engine
from tests.tui.run_view_support import close_intervention_modal, run_screen, wait_for
from tests.tui.seed import MAIN_RUN, SEED_NOW, Seeded
from tui.app import OrchestratorApp
from tui.modals.confirm import ConfirmModal
from tui.modals.intervention import InterventionModal
from tui.widgets.findings import FindingsPane
from tui.widgets.keybar import KeyBar

STEP = re.compile(r"step (\d+):")


def _steps(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := STEP.search(line))]


def _app(engine: Engine) -> OrchestratorApp:
    return OrchestratorApp(engine, initial_run=MAIN_RUN, clock=lambda: SEED_NOW)


async def test_log_filter_searches_the_whole_stored_history(seeded: Seeded, engine: Engine) -> None:
    async with _app(engine).run_test(size=(130, 40)) as pilot:
        await close_intervention_modal(pilot)
        log = run_screen(pilot.app).live_log
        assert _steps(log.shown_lines)[-1] == seeded.log_lines
        assert 42 not in _steps(log.shown_lines)  # far older than the lines held in memory

        await pilot.press("slash", *"step 42:", "enter")
        await wait_for(pilot, lambda: log.filter_text == "step 42:" and not log.busy, what="filter")
        assert _steps(log.shown_lines) == [42]
        await wait_for(pilot, lambda: log.has_focus, what="the log to take the focus back")

        # Esc clears the filter and shows the newest lines again.
        await pilot.press("escape")
        await wait_for(pilot, lambda: not log.filter_text and not log.busy, what="unfiltered")
        assert _steps(log.shown_lines)[-1] == seeded.log_lines
        assert log.follow

        # A filter matching many lines holds the newest matches, all of which match.
        await pilot.press("slash", *"warning-free", "enter")
        await wait_for(pilot, lambda: not log.busy and log.filter_text != "", what="filter")
        assert log.records == []
        await pilot.press("slash", *"running pytest", "enter")  # typing replaces the old filter
        await wait_for(
            pilot, lambda: log.filter_text == "running pytest" and not log.busy, what="filter"
        )
        stored = await engine.log_page(MAIN_RUN, limit=10_000, contains="running pytest")
        assert [r.seq for r in log.records] == [r.seq for r in stored][-len(log.records) :]
        assert all("running pytest" in line for line in log.shown_lines)


async def test_scrolling_back_loads_older_lines_from_the_store(
    seeded: Seeded, engine: Engine
) -> None:
    async with _app(engine).run_test(size=(130, 40)) as pilot:
        await close_intervention_modal(pilot)
        log = run_screen(pilot.app).live_log
        first_held = _steps(log.shown_lines)[0]
        assert first_held > 1 and log.has_older

        # Page up until the lines before the window are read from the store.
        for _ in range(200):
            if _steps(log.shown_lines)[0] < first_held:
                break
            await pilot.press("pageup")
            await wait_for(pilot, lambda: not log.busy, what="a page of older lines")
        steps = _steps(log.shown_lines)
        assert steps[0] < first_held
        assert steps == list(range(steps[0], steps[0] + len(steps)))  # contiguous, in order
        assert not log.follow
        assert "paused" in str(pilot.app.screen.query_one("#log-status").render())

        # A second page back: the window stays bounded, so the newest lines leave memory.
        second = steps[0]
        for _ in range(100):
            if _steps(log.shown_lines)[0] < second:
                break
            await pilot.press("pageup")
            await wait_for(pilot, lambda: not log.busy, what="a page of older lines")
        assert _steps(log.shown_lines)[0] < second
        assert len(log.records) <= log.max_lines
        assert not log.at_tail and _steps(log.shown_lines)[-1] < seeded.log_lines
        assert "newer lines below" in str(pilot.app.screen.query_one("#log-status").render())

        # End follows the newest lines again.
        await pilot.press("end")
        await wait_for(pilot, lambda: log.follow and log.at_tail and not log.busy, what="follow")
        assert _steps(log.shown_lines)[-1] == seeded.log_lines

        # Home jumps to the run's first line straight from the store; p pauses and follows.
        await pilot.press("home")
        await wait_for(pilot, lambda: not log.busy and not log.follow, what="the first page")
        assert _steps(log.shown_lines)[0] == 1 and not log.has_older
        await pilot.press("p")
        await wait_for(pilot, lambda: log.follow and not log.busy, what="follow")
        assert _steps(log.shown_lines)[-1] == seeded.log_lines


async def test_findings_severity_filter_and_detail(seeded: Seeded, engine: Engine) -> None:
    async with _app(engine).run_test(size=(130, 40)) as pilot:
        await close_intervention_modal(pilot)
        pane = pilot.app.screen.query_one(FindingsPane)
        await pilot.press("f")
        assert pane.findings_tree.has_focus
        every = {f.severity for f in pane.shown_findings}
        assert every == {"major", "medium", "minor"} and len(pane.shown_findings) == 6
        files = [n.label.plain.rsplit(" (", 1)[0] for n in pane.findings_tree.root.children]
        assert files == sorted(files) and "inventory/validate.py" in files

        await pilot.press("s")  # medium and worse
        assert {f.severity for f in pane.shown_findings} == {"major", "medium"}
        await pilot.press("s")  # major only
        assert {f.severity for f in pane.shown_findings} == {"major"}
        leaves = [leaf.label.plain for n in pane.findings_tree.root.children for leaf in n.children]
        assert len(leaves) == 2 and all(label.startswith("major") for label in leaves)
        await pilot.press("o")  # open ones only: the resolved major goes
        assert [f.path for f in pane.shown_findings] == ["tests/test_export.py"]

        await pilot.press("down", "down")
        detail = str(pane.query_one("#finding-detail").render())
        assert "FAILED tests/test_export.py::test_csv_header" in detail
        assert "tool output" in detail and "phase phase-002" in detail

        await pilot.press("s", "o")  # back to every severity and status
        assert len(pane.shown_findings) == 6


async def test_run_keys_answer_the_intervention_and_cancel_the_run(
    seeded: Seeded, engine: Engine
) -> None:
    """i answers the run's pending intervention; C cancels the run after a confirm (tui.actions)."""
    app = _app(engine)
    async with app.run_test(size=(130, 40)) as pilot:
        await close_intervention_modal(pilot)
        screen = run_screen(app)
        assert [i.id for i in screen.pending] == ["i5eed0risk"]

        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="modal")
        await pilot.press("a")
        await wait_for(pilot, lambda: not screen.pending, what="the answer to reach the view")
        approved = [i for i in await engine.interventions(MAIN_RUN) if i.id == "i5eed0risk"]
        assert str(approved[0].status) == "approved"
        assert "waiting for you" not in str(screen.query_one("#run-head").render())

        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirm")
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: screen.run is not None and str(screen.run.status) == "cancelled",
            what="the run cancelled",
        )
        assert str((await engine.get_run(MAIN_RUN)).status) == "cancelled"
        # A cancelled run can be cleaned up but not cancelled or resumed again: the key bar says so.
        bar = screen.query_one(KeyBar)
        await wait_for(pilot, lambda: "Clean up" in str(bar.render()), what="the keys to change")
        assert "Cancel run" not in str(bar.render()) and "Resume" not in str(bar.render())
