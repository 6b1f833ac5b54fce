"""Section 5, lessons: the list of what earlier runs taught, one lesson's detail, and forgetting one
after a confirm that records who did it (the app's `--as NAME`), all by keyboard."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.widgets import DataTable

from config.paths import Paths
from tests.tui.seed import COMPLETED_RUN, FAILED_RUN, MAIN_RUN, REPO, seed, ts
from tests.tui.settle import wait_settled
from tests.tui.shell_support import ShellApp, top, wait_for, wait_for_modal, wait_until
from tui.modals.confirm import ConfirmModal
from tui.modals.intervention import InterventionModal
from tui.screens.lessons import LessonsScreen
from tui.screens.run_view import RunScreen

ROOT_COMMIT = "9c1e4b7a2d3f5e6a8b9c0d1e2f3a4b5c6d7e8f90"
PHASE_LESSON = "l3f2a9c0d1e"
FINDING_LESSON = "l8b7c6d5e4f"
FLAKY_LESSON = "l1a2b3c4d5e"
LESSONS: list[dict[str, Any]] = [
    {
        "id": PHASE_LESSON,
        "kind": "phase_failed",
        "subject": "phase:csv export of the inventory",
        "task": "Add input validation and a CSV export to the inventory store",
        "text": 'Phase "CSV export of the inventory" (task: Add input validation and a CSV export '
        "to the inventory store) failed attempt 1 in run r5eed0fail: test_export_quotes_commas "
        "failed: a comma inside a name split the row. Attempt 2 passed (csv.writer quotes "
        "fields).",
        "runs": [FAILED_RUN, MAIN_RUN],
        "created_at": ts(31),
        "updated_at": ts(75),
    },
    {
        "id": FINDING_LESSON,
        "kind": "finding_returned",
        "subject": "finding:ruff/E501:inventory/export.py",
        "task": "Add a health check endpoint",
        "text": "Finding ruff/E501 inventory/export.py:41 came back after it was fixed: line too "
        "long (104 > 100).",
        "runs": [COMPLETED_RUN],
        "created_at": ts(12.5),
        "updated_at": ts(12.5),
    },
    {
        "id": FLAKY_LESSON,
        "kind": "flaky_check",
        "subject": "check:pytest:tests/test_stock.py",
        "task": "Cache product lookups",
        "text": "Check pytest is flaky: in run r5eed0done it failed attempt 1 of phase "
        "Readiness probe and passed attempt 2 on the same tree.",
        "runs": [COMPLETED_RUN],
        "forgotten_at": ts(20),
        "forgotten_by": "alice",
        "created_at": ts(10),
        "updated_at": ts(10),
    },
]


class Notices(list[Notification]):
    """The notifications the app showed (a message hook for `run_test`)."""

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.append(message.notification)


def app_with_lessons(home: Path) -> ShellApp:
    db = Paths(home).db
    seed(db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for row in LESSONS:
            values = {
                "repo_key": ROOT_COMMIT,
                "repo": REPO,
                **row,
            }
            if row.get("forgotten_at"):  # as forgetting stores it: the runs are kept apart
                values["runs"], values["forgotten_runs"] = [], row["runs"]
            else:
                values["forgotten_runs"] = []
            values["runs"] = json.dumps(values["runs"])
            values["forgotten_runs"] = json.dumps(values["forgotten_runs"])
            cols = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            conn.execute(f"INSERT INTO lessons ({cols}) VALUES ({marks})", list(values.values()))
    finally:
        conn.close()
    return ShellApp(home)


async def lessons_shown(pilot: Pilot[Any]) -> LessonsScreen:
    """Set the start-up intervention aside, press 5 and wait for the three lessons."""
    await wait_for_modal(pilot, InterventionModal, focus="approve")
    await pilot.press("escape", "5")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, LessonsScreen), what="lessons")
    screen = top(pilot.app, LessonsScreen)  # type: ignore[arg-type]
    await wait_for(pilot, lambda: len(screen.items) == 3, what="three lessons listed")
    return screen


def detail(screen: LessonsScreen) -> str:
    return str(screen.query_one("#detail").render())


async def test_browse_read_and_forget_a_lesson_as_the_app_user(home: Path) -> None:
    app, notices = app_with_lessons(home), Notices()
    async with app.run_test(size=(120, 34), message_hook=notices) as pilot:
        app.engine.act_as("bob")  # as `orchestrator --as bob` would
        screen = await lessons_shown(pilot)
        # Newest first: the phase lesson, with its whole text and provenance below the table.
        assert [le.id for le in screen.items] == [PHASE_LESSON, FINDING_LESSON, FLAKY_LESSON]
        shown = detail(screen)
        assert "Attempt 2 passed (csv.writer quotes fields)." in shown
        assert f"from runs {FAILED_RUN}, {MAIN_RUN}" in shown
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: "by alice" in detail(screen), what="the forgotten one")
        await pilot.press("F")  # forgotten already: nothing to confirm
        await wait_for(
            pilot,
            lambda: any("forgotten already (by alice)" in n.message for n in notices),
            what="the note that it is forgotten already",
        )
        assert not isinstance(app.screen, ConfirmModal)

        await pilot.press("up")
        await wait_for(pilot, lambda: FINDING_LESSON in detail(screen), what="the finding one")
        await pilot.press("F")
        modal = await wait_for_modal(pilot, ConfirmModal, focus="back")
        assert "Recorded as forgotten by bob" in modal.detail
        await pilot.press("n")  # backing out forgets nothing
        await wait_for(pilot, lambda: app.screen is screen, what="the list again")
        assert not (await app.engine.lesson(FINDING_LESSON)).forgotten

        await pilot.press("F")
        await wait_for_modal(pilot, ConfirmModal, focus="back")
        await pilot.press("y")

        async def forgotten_by_bob() -> bool:
            return (await app.engine.lesson(FINDING_LESSON)).forgotten_by == "bob"

        await wait_until(pilot, forgotten_by_bob, what="the lesson stored forgotten by bob")
        await wait_for(pilot, lambda: "by bob" in detail(screen), what="the detail to say so")
        table = screen.query_one("#lessons", DataTable)
        await wait_for(
            pilot,
            lambda: str(table.get_cell(FINDING_LESSON, "status")) == "forgotten",
            what="the row to say forgotten",
        )
        assert not (await app.engine.lesson(PHASE_LESSON)).forgotten

        await pilot.press("o")  # the newest run the lesson came from
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="its run")
        assert top(app, RunScreen).run_id == COMPLETED_RUN


def summary(screen: LessonsScreen) -> str:
    return str(screen.query_one("#summary").render())


def shown_ids(screen: LessonsScreen) -> list[str]:
    return [le.id for le in screen.items]


async def test_filter_lessons_by_keyboard(home: Path) -> None:
    app = app_with_lessons(home)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await lessons_shown(pilot)
        await pilot.press("slash", *"CSV")  # the lesson's text, any case
        await wait_for(pilot, lambda: shown_ids(screen) == [PHASE_LESSON], what="the csv lesson")
        assert summary(screen).startswith('1 of 3 match filter "CSV" · 3 lessons · 1 forgotten')
        assert "Attempt 2 passed (csv.writer quotes fields)." in detail(screen)
        await pilot.press("enter")  # back to the table, the filter kept
        assert screen.query_one("#lessons").has_focus
        await pilot.press("slash", "ctrl+u", *"readiness probe")  # a phase named in the lesson
        await wait_for(pilot, lambda: shown_ids(screen) == [FLAKY_LESSON], what="the flaky one")
        await pilot.press("ctrl+u", *"ruff e501 export")  # every word, anywhere in the lesson
        await wait_for(pilot, lambda: shown_ids(screen) == [FINDING_LESSON], what="the finding")
        await pilot.press("ctrl+u", *"inventory-service forgotten")  # repository and status
        await wait_for(pilot, lambda: shown_ids(screen) == [FLAKY_LESSON], what="forgotten one")
        await pilot.press("ctrl+u", *"nothing like this")
        await wait_for(pilot, lambda: shown_ids(screen) == [], what="no lesson to match")
        assert summary(screen).startswith('none match filter "nothing like this"')
        assert not screen.has_class("empty") and detail(screen) == ""
        await pilot.press("escape")  # out of the field, the filter kept
        assert screen.query_one("#lessons").has_focus and shown_ids(screen) == []
        await pilot.press("escape")  # the filter cleared
        await wait_for(pilot, lambda: len(shown_ids(screen)) == 3, what="every lesson again")
        assert summary(screen).startswith("3 lessons") and not screen.has_class("filtering")
        await pilot.press("escape")  # then back to the runs, as before
        await wait_for(pilot, lambda: app.screen is not screen, what="the runs section")


def test_lessons_filtered(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await lessons_shown(pilot)
        await pilot.press("slash", *"csv")
        await wait_for(pilot, lambda: shown_ids(screen) == [PHASE_LESSON], what="the filter")
        await pilot.press("enter")  # the table again, under the field that keeps the filter
        await wait_for(pilot, lambda: screen.query_one("#lessons").has_focus, what="the table")
        await wait_settled(pilot)

    assert snap_compare(app_with_lessons(home), run_before=run_before, terminal_size=(120, 34))


def test_lessons_section(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await lessons_shown(pilot)
        await wait_settled(pilot)

    assert snap_compare(app_with_lessons(home), run_before=run_before, terminal_size=(120, 34))


def test_forget_lesson_confirm_at_80x24(snap_compare: Any, home: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.engine.act_as("bob")  # type: ignore[attr-defined]  # the confirm names who acts
        screen = await lessons_shown(pilot)
        await pilot.press("down")
        await wait_for(pilot, lambda: FINDING_LESSON in detail(screen), what="the finding one")
        await pilot.press("F")
        await wait_for_modal(pilot, ConfirmModal, focus="back")
        await wait_settled(pilot)

    assert snap_compare(app_with_lessons(home), run_before=run_before, terminal_size=(80, 24))
