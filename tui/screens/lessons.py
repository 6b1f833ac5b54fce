"""Section 5: the lessons earlier runs taught (every repository's), one lesson's detail, forgetting.

Rows come from the engine (newest first, forgotten ones too, dimmed); the highlighted lesson's
whole text and provenance show below the table. `/` filters the rows (every word must match the
lesson's text, repository, subject such as its phase, kind, status, task or id). `F` forgets the
highlighted lesson after a confirm that says who the forgetting is recorded as (the app's
`--as NAME`, else the OS user and git's user.name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from core.errors import OrchestratorError
from core.records import Lesson
from tui.format import local_time
from tui.modals.confirm import ConfirmModal
from tui.screens.listing import FilterField, ListSection

REPO_WIDTH = 16  # the repository's folder name; the detail shows its whole path
# Kind names as a person reads them (core/lessons.py LESSON_KINDS).
KIND_WORDS = {
    "phase_failed": "phase failed",
    "finding_returned": "finding returned",
    "flaky_check": "flaky check",
}


def _tail(text: str, width: int) -> str:
    """The end of a long path, which tells repositories apart better than its start."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def lesson_matches(le: Lesson, query: str) -> bool:
    """Whether every word of the filter occurs (ignoring case) in what the row and its detail
    show: the text, repository, subject (e.g. the phase), kind, status, task or id."""
    status = "forgotten" if le.forgotten else "active"
    kind = KIND_WORDS.get(le.kind, le.kind)
    shown = f"{le.text} {le.repo} {le.subject} {kind} {status} {le.task} {le.id}".casefold()
    return all(word in shown for word in query.casefold().split())


def lesson_detail(le: Lesson) -> Text:
    """One lesson whole: what it says, what it is about, where it came from, who forgot it."""
    text = Text()
    text.append(f"lesson {le.id}  ", style="bold")
    if le.forgotten:
        text.append(f"forgotten {local_time(le.forgotten_at)} by {le.forgotten_by}", "yellow")
    else:
        text.append("active: later prompts on this repository carry it", style="green")
    text.append(f"\n{le.text}")
    text.append(f"\n{KIND_WORDS.get(le.kind, le.kind)} · {le.subject}", style="dim")
    text.append(f"\n{le.repo} (root commit {le.repo_key[:12]})", style="dim")
    text.append(f"\nlearned {local_time(le.created_at)}", style="dim")
    if le.updated_at != le.created_at:
        text.append(f", last {local_time(le.updated_at)}", style="dim")
    text.append(f" from runs {', '.join(le.runs) or '-'}", style="dim")
    if le.forgotten_runs:
        text.append(f"; forgotten runs {', '.join(le.forgotten_runs)}", style="dim")
    text.append(f"\ntask: {le.task}", style="dim")
    return text


class LessonsScreen(ListSection[Lesson], FilterField):
    """Every lesson, its detail below; `F` forgets the selected one, `o` opens its newest run."""

    SECTION = "Lessons"
    SUB_TITLE = "Lessons"
    AUTO_FOCUS = "#lessons"
    COLUMNS = (
        ("Status", "status"),
        ("Kind", "kind"),
        ("Runs", "runs"),
        ("Repository", "repo"),
        ("Lesson", "text"),
    )
    REFRESH_SECONDS = 2.0
    DEFAULT_CSS = """
    LessonsScreen #bar { height: 1; padding: 0 1; background: $boost; }
    LessonsScreen #filter { display: none; margin: 0 1; }
    LessonsScreen.filtering #filter { display: block; }
    LessonsScreen #summary { width: 1fr; }
    LessonsScreen DataTable { height: 1fr; }
    LessonsScreen #detail {
        height: auto; max-height: 45%; padding: 0 1; border-top: solid $primary;
    }
    LessonsScreen #empty { display: none; padding: 2 4; color: $text-muted; }
    LessonsScreen.empty #empty { display: block; }
    LessonsScreen.empty DataTable, LessonsScreen.empty #detail { display: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("F", "forget", "Forget"),
        Binding("o", "open_run", "Open run"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.every: list[
            Lesson
        ] = []  # all lessons as last read; `items` are those the filter keeps

    @property
    def current_run_id(self) -> str | None:
        """The newest run the highlighted lesson came from (a forgotten one's runs are kept apart)."""
        item = self.current
        runs = (item.runs or item.forgotten_runs) if item is not None else []
        return runs[-1] if runs else None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter: words in the lesson, repository, phase, kind or status",
            id="filter",
            disabled=True,  # enabled while shown, so the hidden field never takes focus
        )
        with Horizontal(id="bar"):
            yield Label("", id="summary")
        yield DataTable(id="lessons", cursor_type="row", zebra_stripes=True)
        yield Static(id="detail")
        yield Label(
            "No lessons yet. They are learned when a run ends (a phase that failed, a finding "
            "that came back, a flaky check) and go into later prompts on the same repository.",
            id="empty",
        )
        yield Footer()

    @work(group="load", exclusive=True)
    async def _load(self) -> None:
        try:
            items = await self.orchestrator.engine.lessons()
        except OrchestratorError as exc:
            self.notify(str(exc), title="lessons", severity="error")
            return
        self._show(items)

    def _text_width(self) -> int:
        """What the lesson column gets of the width after the other columns and padding."""
        return max(20, self.app.size.width - (9 + 16 + 4 + REPO_WIDTH) - 2 * 5 - 3)

    def _cells(self, le: Lesson) -> tuple[Any, ...]:
        style = "dim" if le.forgotten else ""
        width = self._text_width()
        line = " ".join(le.text.split())
        return (
            Text("forgotten" if le.forgotten else "active", style or "green"),
            Text(KIND_WORDS.get(le.kind, le.kind), style),
            Text(str(len(le.runs)), style),
            Text(_clip(Path(le.repo).name or le.repo, REPO_WIDTH), style),
            Text(_clip(line, width), style),
        )

    def _show(self, every: list[Lesson]) -> None:
        self.every = every
        items = [le for le in every if lesson_matches(le, self.query_text)]
        if not self._fill(items, [self._cells(le) for le in items]):
            return
        self.set_class(not every, "empty")  # a filter that matches nothing keeps the table
        forgotten = sum(1 for le in every if le.forgotten)
        text = (
            f"{len(every)} lesson{'s' if len(every) != 1 else ''} · {forgotten} forgotten"
            " · prompts on a repository carry its active ones"
        )
        if self.query_text:
            shown = f"{len(items)} of {len(every)}" if items else "none"
            text = f'{shown} match filter "{self.query_text}" · {text}'
        self.query_one("#summary", Label).update(text)
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        item = self.current
        self.query_one("#detail", Static).update(lesson_detail(item) if item else "")

    # ---- filter --------------------------------------------------------------------------------

    def filter_list(self) -> Widget:
        return self.query_one(DataTable)

    def refilter(self) -> None:
        self._show(self.every)  # the lessons are all read: filtering needs no new read

    def action_back(self) -> None:
        """Esc: leave the filter field, then clear the filter, then back to the runs."""
        if not self.leave_filter():
            super().action_back()

    # ---- actions -------------------------------------------------------------------------------

    def action_forget(self) -> None:
        item = self.current
        if item is None:
            self.notify("no lesson selected", severity="warning")
        elif item.forgotten:
            self.notify(f"lesson {item.id} is forgotten already (by {item.forgotten_by})")
        else:
            self._forget(item)

    @work(group="forget", exclusive=True, exit_on_error=False)
    async def _forget(self, item: Lesson) -> None:
        """Confirm, then forget through the engine, which records who did it."""
        engine = self.orchestrator.engine
        actor = await engine.actor()
        ok = await self.app.push_screen_wait(
            ConfirmModal(
                f"Forget lesson {item.id}?",
                f"Later prompts on {_tail(item.repo, 40)} leave it out, and the "
                f"{len(item.runs)} run(s) it came from never teach it again (a new run that "
                f"fails the same way can). Recorded as forgotten by {actor.name} (start the app "
                "with --as NAME to record another name).",
                confirm_label="Forget",
            )
        )
        if not ok:
            return
        try:
            done = await engine.forget_lesson(item.id)
        except OrchestratorError as exc:
            self.notify(str(exc), title="forget lesson", severity="error", timeout=10)
            return
        self.notify(f"lesson {done.id} forgotten by {done.forgotten_by}", title="lesson forgotten")
        self.reload()

    def palette_commands(self) -> list[SystemCommand]:
        return [
            SystemCommand(
                "Filter lessons",
                "Type words of the lesson, repository, phase, kind or status (/)",
                self.action_filter,
            ),
            SystemCommand(
                "Forget the selected lesson",
                "Later prompts leave it out; asks first (F)",
                self.action_forget,
            ),
        ]
