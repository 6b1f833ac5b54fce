"""Keyboard-driven flows of the app shell with real runs (the offline demo's cassette) and a real store."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Label

from config.paths import Paths
from core.demo.prepare import DEMO_TASK
from core.records import InterventionStatus, PhaseStatus, RunStatus
from tests.conftest import make_repo
from tests.tui.seed import COMPLETED_RUN, FAILED_RUN, MAIN_RUN, PENDING_INTERVENTION, seed
from tests.tui.shell_support import (
    ShellApp,
    top,
    wait_for,
    wait_for_modal,
    wait_for_palette_hit,
    wait_until,
)
from tui.modals.intervention import InterventionModal
from tui.modals.run_stopped import RunStoppedModal
from tui.screens.interventions import InterventionsScreen
from tui.screens.new_run import NewRunScreen
from tui.screens.run_view import RunScreen
from tui.screens.runs import RunsScreen

SIZE = (130, 40)


async def test_start_a_run_from_the_form_and_approve_it_in_the_modal(home: Path) -> None:
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        form = top(app, NewRunScreen)
        await pilot.press("ctrl+o")  # the offline demo's values: a fresh sample repo and cassette
        # The task is filled first; the provider follows when the radio set posts its change.
        await wait_for(
            pilot,
            lambda: form.query_one("#task", Input).value == DEMO_TASK and form.provider == "replay",
            what="the demo values (task and the replay provider)",
        )
        await pilot.press("ctrl+s")
        modal = await wait_for_modal(pilot, InterventionModal, focus="approve")
        assert "high risk" in str(modal.query_one("#reason").render())
        assert "run the phase" in str(modal.query_one("#approve-does").render())
        assert "skip it" in str(modal.query_one("#reject-does").render())
        run_id = modal.item.run_id
        await pilot.press("a")

        async def completed() -> bool:
            return (await app.engine.get_run(run_id)).status is RunStatus.COMPLETED

        await wait_until(pilot, completed, what="the run to complete")
        [item] = await app.engine.interventions(run_id)
        assert item.status is InterventionStatus.APPROVED
        assert all(p.status is PhaseStatus.COMPLETED for p in await app.engine.phases(run_id))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        assert app.screen.run_id == run_id  # type: ignore[attr-defined]


async def test_the_form_says_what_is_wrong_and_stores_nothing(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the folder is typed as a relative path
    not_git = tmp_path / "plain-folder"
    not_git.mkdir()
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        form = top(app, NewRunScreen)
        await pilot.press("ctrl+s")
        errors = form.query_one("#errors", Label)
        assert "Task: say what the run should do." in str(errors.render())
        await pilot.press(*"Add a changelog")
        form.query_one("#repo", Input).focus()
        await pilot.press("ctrl+u", *"plain-folder", "ctrl+s")
        await wait_for(
            pilot, lambda: "git" in str(errors.render()).lower(), what="the repository error"
        )
        assert str(not_git) in str(errors.render())
        assert await app.engine.count_runs() == 0


async def test_a_form_error_shows_whole_and_names_the_field_to_change(
    home: Path, tmp_path: Path
) -> None:
    """At 80x24 the refusal of a dirty repository wraps to show its advice, in the form's words."""
    repo = make_repo(tmp_path / "repo")
    (repo / "notes.txt").write_text("not committed\n")
    app = ShellApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        form = top(app, NewRunScreen)
        await pilot.press(*"Add a changelog")
        form.query_one("#repo", Input).focus()
        await pilot.press("ctrl+u", *str(repo), "ctrl+s")
        errors = form.query_one("#errors", Label)
        await wait_for(
            pilot, lambda: "uncommitted" in str(errors.render()), what="the dirty-repository error"
        )
        await pilot.pause()
        shown = " ".join(errors.render_line(y).text.strip() for y in range(errors.size.height))
        # A long path may wrap anywhere, so the whole text is compared without its spacing.
        flat = "".join(shown.split())
        assert flat.startswith(f"Repository: {repo} has uncommitted changes:".replace(" ", ""))
        assert "notes.txt" in shown
        advice = 'commit or stash them, or tick "Start from HEAD even with uncommitted changes".'
        assert flat.endswith(advice.replace(" ", ""))
        assert "--" not in shown
        assert await app.engine.count_runs() == 0


async def test_reject_with_a_note_from_the_modal_shown_at_start(home: Path) -> None:
    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("n")
        note = app.screen.query_one("#note", Input)
        await wait_for(pilot, lambda: note.has_focus, what="the note field")
        await pilot.press(*"not this week", "enter", "r")

        async def rejected() -> bool:
            [item] = [
                i for i in await app.engine.interventions(MAIN_RUN) if i.id == PENDING_INTERVENTION
            ]
            return item.status is InterventionStatus.REJECTED

        await wait_until(pilot, rejected, what="the rejection to be stored")
        [item] = [
            i for i in await app.engine.interventions(MAIN_RUN) if i.id == PENDING_INTERVENTION
        ]
        assert item.note == "not this week"
        assert isinstance(app.screen, RunsScreen)


async def test_escape_leaves_them_pending_one_after_another_then_answer_from_the_list(
    home: Path,
) -> None:
    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="a modal")
        second = await app.engine.store.create_intervention(
            COMPLETED_RUN,
            None,
            "threshold",
            "2 major findings are open",
            "approve: continue the run; reject: abort it",
        )
        await pilot.press("escape")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, InterventionModal) and app.screen.item.id == second.id,
            what="the second modal",
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs list")
        pending = await app.engine.interventions(pending_only=True)
        assert {i.id for i in pending} == {PENDING_INTERVENTION, second.id}
        for _ in range(3):  # the poll does not show set-aside ones again
            await pilot.pause(0.4)
        assert isinstance(app.screen, RunsScreen)

        await pilot.press("2")
        listing = top(app, InterventionsScreen)
        await wait_for(pilot, lambda: len(listing.items) >= 3, what="the interventions list")
        assert [str(i.status) for i in listing.items[:2]] == ["pending", "pending"]
        row = next(n for n, i in enumerate(listing.items) if i.id == second.id)
        for _ in range(row):
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        await pilot.press("a")

        async def approved() -> bool:
            items = await app.engine.interventions(COMPLETED_RUN)
            return items[0].status is InterventionStatus.APPROVED

        await wait_until(pilot, approved, what="the approval")


async def test_resume_an_interrupted_run_from_the_runs_table(home: Path) -> None:
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "ctrl+o")
        form = top(app, NewRunScreen)
        await wait_for(
            pilot, lambda: form.query_one("#task", Input).value == DEMO_TASK, what="demo values"
        )
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        run_id = top(app, InterventionModal).item.run_id
        # Interrupt the run while it waits (as quitting the app does), leaving the answer open.
        await pilot.press("escape")
        for worker in [w for w in app.workers if w.group == "engine"]:
            worker.cancel()
        await wait_for(pilot, lambda: isinstance(app.screen, RunStoppedModal), what="run stopped")
        assert (await app.engine.get_run(run_id)).status is RunStatus.INTERRUPTED
        await pilot.press("escape")  # the modal
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        await pilot.press("escape")  # back to the form, whose Esc goes to the runs
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen), what="the form")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs")
        runs = top(app, RunsScreen)
        await wait_for(pilot, lambda: runs.current_run_id == run_id, what="the run in the table")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        await pilot.press("a")

        async def completed() -> bool:
            return (await app.engine.get_run(run_id)).status is RunStatus.COMPLETED

        await wait_until(pilot, completed, what="the resumed run to complete")


async def test_cancel_a_run_after_confirming(home: Path) -> None:
    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        await pilot.press("escape")
        runs = top(app, RunsScreen)
        await wait_for(pilot, lambda: runs.current_run_id == MAIN_RUN, what="the runs table")
        await pilot.press("C")
        await wait_for(pilot, lambda: app.screen is not runs, what="the confirm")
        await pilot.press("n")  # backing out changes nothing
        await pilot.pause()
        assert (await app.engine.get_run(MAIN_RUN)).status is RunStatus.WAITING
        await pilot.press("C")
        await wait_for(pilot, lambda: app.screen is not runs, what="the confirm")
        await pilot.press("y")

        async def cancelled() -> bool:
            return (await app.engine.get_run(MAIN_RUN)).status is RunStatus.CANCELLED

        await wait_until(pilot, cancelled, what="the cancel")
        await wait_for(
            pilot,
            lambda: "cancelled" in str(runs.query_one("#runs").get_row(MAIN_RUN)[2]),
            what="the table to show it",
        )


async def test_filter_and_sort_the_runs(home: Path) -> None:
    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        await pilot.press("escape")
        runs = top(app, RunsScreen)
        await wait_for(pilot, lambda: len(runs.summaries) == 5, what="five runs")
        await pilot.press("slash", *"settings")
        await wait_for(pilot, lambda: len(runs.summaries) == 1, what="the filter")
        assert runs.summaries[0].run.task == "Migrate the settings file to TOML"
        await pilot.press("enter")
        assert runs.query_one("#runs").has_focus
        await pilot.press("slash", "ctrl+u", *"status:interrupted")
        await wait_for(
            pilot,
            lambda: [s.run.status for s in runs.summaries] == [RunStatus.INTERRUPTED],
            what="the status filter",
        )
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: len(runs.summaries) == 5, what="the filter to clear")
        await pilot.press("s", "s")  # started -> duration -> task, A to Z
        await wait_for(pilot, lambda: runs.sort == "task", what="sorting by task")
        await wait_for(
            pilot,
            lambda: (
                [s.run.task for s in runs.summaries]
                == sorted((s.run.task for s in runs.summaries), key=str.lower)
            ),
            what="rows in task order",
        )
        first = runs.summaries[0].run.task
        await pilot.press("S")
        await wait_for(pilot, lambda: runs.summaries[-1].run.task == first, what="reversed order")


async def test_ten_thousand_runs_page_from_the_store(home: Path) -> None:
    seeded = seed(Paths(home).db, quick_runs=10_000, rich=False)
    oldest, newest = seeded.run_ids[0], seeded.run_ids[-1]
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        runs = top(app, RunsScreen)
        table = runs.query_one("#runs")
        await wait_for(pilot, lambda: runs.current_run_id == newest, what="the first page")
        assert runs.total == 10_000 and table.row_count <= 200
        await pilot.press("end")
        await wait_for(pilot, lambda: runs.current_run_id == oldest, what="the last run")
        assert table.row_count <= 200
        assert "run 10,000 of 10,000" in str(runs.query_one("#position").render())
        await pilot.press("home")
        await wait_for(pilot, lambda: runs.current_run_id == newest, what="the first run")
        for _ in range(10):  # Page Down to the end of the first page, then once more past it
            if runs.page_offset > 0:
                break
            await pilot.press("pagedown")
            await pilot.pause()
        await wait_for(pilot, lambda: runs.page_offset > 0, what="the second page")
        assert table.row_count <= 200
        assert "run 101 of 10,000" in str(runs.query_one("#position").render())
        await pilot.press("up")
        await wait_for(pilot, lambda: runs.page_offset == 0, what="back to the first page")
        assert runs.query_one("#runs").cursor_row == table.row_count - 1


async def test_help_lists_every_binding_and_the_palette_offers_every_action(home: Path) -> None:
    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        await pilot.press("escape")
        runs = top(app, RunsScreen)
        await wait_for(pilot, lambda: runs.current_run_id == MAIN_RUN, what="the runs table")
        await pilot.press("question_mark")
        from tui.modals.help import HelpModal

        help_modal = top(app, HelpModal)
        described = {k.description for k in help_modal.entries}
        for screen_binding in [*RunsScreen.BINDINGS, *ShellApp.BINDINGS]:
            assert screen_binding.description in described  # type: ignore[union-attr]
        await pilot.press("escape")
        assert app.screen is runs

        titles = [c.title for c in app.get_system_commands(runs)]
        # The waiting run: what can happen to it is offered, what cannot is not.
        for action in ("Cancel", "Export", "Open"):
            assert f"{action} run {MAIN_RUN}" in titles
        for action in ("Resume", "Apply", "Clean up"):
            assert f"{action} run {MAIN_RUN}" not in titles
        for title in (
            "Runs",
            "Interventions",
            "New run",
            "Keys",
            "Filter runs",
            "Sort runs by task",
        ):
            assert title in titles
        await pilot.press("ctrl+p", *"Filter runs")
        await wait_for_palette_hit(pilot, "Filter runs")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: runs.query_one("#filter", Input).has_focus, what="the filter field"
        )


async def test_the_palette_finds_a_run_by_its_task_and_opens_it(home: Path) -> None:
    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs")
        await pilot.press("ctrl+p", *"settings file")
        await wait_for_palette_hit(pilot, FAILED_RUN)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        assert app.screen.run_id == FAILED_RUN  # type: ignore[attr-defined]


async def test_a_question_set_aside_comes_back_after_a_restart(home: Path) -> None:
    seed(Paths(home).db)
    first = ShellApp(home)
    async with first.run_test(size=SIZE) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(first.screen, RunsScreen), what="the runs")
    again = ShellApp(home)
    async with again.run_test(size=SIZE) as pilot:
        modal = await wait_for_modal(pilot, InterventionModal, focus="approve")
        assert modal.item.id == PENDING_INTERVENTION


async def test_a_cancel_from_another_process_withdraws_the_question_and_says_so(
    home: Path,
) -> None:
    import asyncio

    from tests.clirun import cli

    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "ctrl+o")
        form = top(app, NewRunScreen)
        await wait_for(
            pilot, lambda: form.query_one("#task", Input).value == DEMO_TASK, what="demo values"
        )
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, InterventionModal), what="the modal")
        run_id = top(app, InterventionModal).item.run_id
        cancelled = await asyncio.to_thread(cli, home, "cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        modal = await wait_for_modal(pilot, RunStoppedModal, focus="open")
        assert f"Run {run_id} cancelled" in str(modal.query_one("#title", Label).render())
        assert "cannot be resumed" in str(modal.query_one("#advice").render())
        await wait_for(
            pilot,
            lambda: not any(isinstance(s, InterventionModal) for s in app.screen_stack),
            what="the withdrawn question's modal to close",
        )
        [item] = await app.engine.interventions(run_id)
        assert item.status is InterventionStatus.WITHDRAWN


async def test_a_question_answered_elsewhere_closes_only_its_own_modal(home: Path) -> None:
    """Two refreshes at once (a poll and a run's end) see the answer: the run view stays open."""
    import asyncio

    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("escape")  # set aside, then opened again over a run view
        app.open_run(MAIN_RUN)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        app.answer(await app.engine.intervention(PENDING_INTERVENTION))
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await app.engine.resolve_intervention(PENDING_INTERVENTION, approve=True)
        await asyncio.gather(app.decisions.refresh(), app.decisions.refresh())
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view again")
        await pilot.pause()
        assert [type(s).__name__ for s in app.screen_stack] == ["RunsScreen", "RunScreen"]


async def test_a_question_answered_under_another_modal_closes_when_that_one_does(
    home: Path,
) -> None:
    seed(Paths(home).db)
    app = ShellApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        # a run of this app stops meanwhile: its "run stopped" modal opens over the question
        app.push_screen(RunStoppedModal(await app.engine.get_run(FAILED_RUN)))
        await wait_for_modal(pilot, RunStoppedModal)
        await app.engine.resolve_intervention(PENDING_INTERVENTION, approve=True)
        await app.decisions.refresh()
        await pilot.pause()
        assert isinstance(app.screen_stack[-2], InterventionModal)  # still under the help
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs again")
        assert len(app.screen_stack) == 1
