"""The small things a first user meets: what the palette finds and offers, which keys each run
offers, where number keys and Esc lead, the form's hints and fit at 80x24, and wording."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import Checkbox, DataTable, Input, Label, RadioButton

from config.paths import Paths
from tests.tui.seed import COMPLETED_RUN, FAILED_RUN, INTERRUPTED_RUN, seed
from tests.tui.shell_support import (
    ShellApp,
    seeded_runs,
    top,
    wait_for,
    wait_for_modal,
    wait_for_palette_hit,
)
from tui import actions
from tui.modals.confirm import ConfirmModal
from tui.modals.help import HelpModal
from tui.modals.run_stopped import RunStoppedModal
from tui.screens.new_run import NewRunScreen
from tui.screens.run_view import RunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.usage import UsageBar

SIZE = (130, 40)


def seeded_app(home: Path) -> ShellApp:
    seed(Paths(home).db)
    return ShellApp(home)


async def select_run(pilot: Pilot[Any], runs: RunsScreen, run_id: str) -> None:
    """Move the table's cursor to `run_id`: to the first run, then down."""
    await pilot.press("home")
    await wait_for(pilot, lambda: runs.query_one(DataTable).cursor_row == 0, what="the first run")
    for _ in range(len(runs.summaries)):
        if runs.current_run_id == run_id:
            return
        await pilot.press("down")
    await wait_for(pilot, lambda: runs.current_run_id == run_id, what=f"run {run_id} selected")


def palette_prompts(pilot: Pilot[Any]) -> list[str]:
    lists = pilot.app.screen.query(CommandList)
    if not lists:
        return []
    options = lists.first()
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_the_palette_finds_a_run_by_its_repository_and_lists_keys_once(home: Path) -> None:
    app = seeded_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await seeded_runs(pilot)
        await pilot.press("ctrl+p", *"settings-lib")
        await wait_for_palette_hit(pilot, "settings-lib")
        assert FAILED_RUN in palette_prompts(pilot)[0]
        await pilot.press("ctrl+u", *"keys")
        await wait_for_palette_hit(pilot, "Keys")
        assert sum(p.startswith("Keys") for p in palette_prompts(pilot)) == 1


async def test_actions_are_offered_only_on_runs_they_can_act_on(home: Path) -> None:
    app = seeded_app(home)
    async with app.run_test(size=SIZE) as pilot:
        runs = await seeded_runs(pilot)
        await select_run(pilot, runs, COMPLETED_RUN)
        titles = [c.title for c in app.get_system_commands(runs)]
        assert f"Apply run {COMPLETED_RUN}" in titles
        assert f"Cancel run {COMPLETED_RUN}" not in titles
        assert f"Resume run {COMPLETED_RUN}" not in titles
        assert runs.check_action("cancel", ()) is False
        await pilot.press("C")  # not offered: nothing to confirm
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal)

        await select_run(pilot, runs, INTERRUPTED_RUN)
        titles = [c.title for c in app.get_system_commands(runs)]
        assert f"Resume run {INTERRUPTED_RUN}" in titles
        assert f"Apply run {INTERRUPTED_RUN}" not in titles
        assert runs.check_action("apply", ()) is False
        await pilot.press("A")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal)
        # The palette's command for a run whose state changed meanwhile says why it refuses.
        notes: list[str] = []
        notify = app.notify

        def recording(message: str, **kwargs: Any) -> None:
            notes.append(message)
            notify(message, **kwargs)

        app.notify = recording  # type: ignore[method-assign]
        app.spawn_action(actions.apply, INTERRUPTED_RUN)
        await wait_for(
            pilot,
            lambda: any("only a completed run can be applied" in n for n in notes),
            what="the refusal",
        )

        # The run view of a finished run offers no cancel.
        await select_run(pilot, runs, COMPLETED_RUN)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        view = top(app, RunScreen)
        await wait_for(pilot, lambda: view.run is not None, what="the run read")
        assert view.check_action("cancel", ()) is False and view.check_action("apply", ()) is True
        titles = [c.title for c in app.get_system_commands(view)]
        assert f"Cancel run {COMPLETED_RUN}" not in titles


async def test_number_keys_lead_to_the_section_and_esc_back_to_it(home: Path) -> None:
    app = seeded_app(home)
    async with app.run_test(size=SIZE) as pilot:
        runs = await seeded_runs(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        await pilot.press("2")
        await wait_for(pilot, lambda: app.current_mode == "interventions", what="section 2")
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs list")
        assert app.screen is runs and len(app.screen_stack) == 1

        # Runs opened one after another: Esc goes back to the list, not through each of them.
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the first run")
        for run_id in (FAILED_RUN, COMPLETED_RUN):
            await pilot.press("ctrl+p", *run_id)
            await wait_for_palette_hit(pilot, f"Open run {run_id}")
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda run_id=run_id: (
                    isinstance(app.screen, RunScreen) and app.screen.run_id == run_id
                ),
                what=f"run {run_id}",
            )
        assert len(app.screen_stack) == 2
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs list")


async def test_the_form_fits_80x24_and_hints_models_of_the_chosen_provider(home: Path) -> None:
    app = ShellApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        form = top(app, NewRunScreen)
        await pilot.pause()
        model = form.query_one("#model", Input)
        assert "qwen2.5-coder:7b" in model.placeholder and "claude" not in model.placeholder
        form.query_one("#provider-openai", RadioButton).value = True
        await wait_for(pilot, lambda: "gpt-4.1" in model.placeholder, what="OpenAI's models")
        assert "claude" not in model.placeholder
        form.query_one("#provider-anthropic", RadioButton).value = True
        await wait_for(pilot, lambda: "claude" in model.placeholder, what="Anthropic's models")
        assert "gpt" not in model.placeholder
        form.query_one("#provider-ollama", RadioButton).value = True
        await wait_for(pilot, lambda: form.has_class("hosted"), what="the host row")
        await pilot.pause()
        # Every label, choice and option shown reads whole at 80 columns.
        for widget in [
            *form.query(".row > Label"),
            *form.query(RadioButton),
            *form.query(Checkbox),
        ]:
            if not widget.size.area:
                continue  # a row this provider does not use (the cassette)
            text = str(getattr(widget, "label", None) or widget.render())
            shown = "".join(widget.render_line(y).text for y in range(widget.size.height))
            assert text.strip() in shown, (text, shown)


async def test_at_80x24_the_runs_list_names_hidden_columns_and_the_run_view_keeps_tokens(
    home: Path,
) -> None:
    app = seeded_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        runs = await seeded_runs(pilot)
        position = str(runs.query_one("#position", Label).render())
        assert "→ shows" in position and "cost, started, duration" in position
        await pilot.press("right", "right", "right", "right", "right", "right", "right", "right")
        await pilot.press(*["right"] * 40)
        await wait_for(
            pilot,
            lambda: "→ shows" not in str(runs.query_one("#position", Label).render()),
            what="the hint to go once every column shows",
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        view = top(app, RunScreen)
        await wait_for(pilot, lambda: view.refreshes > 0, what="the run read")
        await pilot.pause()
        usage = view.query_one(UsageBar)
        shown = " ".join(usage.render_line(y).text.strip() for y in range(usage.size.height))
        assert "total" in shown and "cost" in shown


async def test_help_sort_arrow_and_stopped_reason_wording(home: Path) -> None:
    app = seeded_app(home)
    async with app.run_test(size=SIZE) as pilot:
        runs = await seeded_runs(pilot)
        await pilot.press("s")  # the next sort column shows the arrow in its header
        table = runs.query_one(DataTable)
        await wait_for(pilot, lambda: runs.sort != "started", what="the sort to change")
        assert str(table.columns[runs.sort].label).endswith(("↓", "↑"))  # type: ignore[index]

        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        await pilot.press("t", "question_mark")
        modal = await wait_for_modal(pilot, HelpModal)
        keys = modal.query_one(DataTable)
        where = [str(keys.get_row_at(i)[-1]) for i in range(keys.row_count)]
        assert "Phase timeline" in where and "PhaseTimeline" not in where
        await pilot.press("escape")

        run = await app.engine.get_run(INTERRUPTED_RUN)
        app.push_screen(RunStoppedModal(replace(run, error="interrupted")))
        stopped = await wait_for_modal(pilot, RunStoppedModal, focus="resume")
        why = str(stopped.query_one("#error").render())
        assert why.startswith("Why: the process driving it stopped")
