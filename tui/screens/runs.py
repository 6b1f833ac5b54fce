"""Section 1: the table of every run, paged from the store so 10,000 runs never load at once.

The table holds one page (PAGE rows). Moving past its first or last row, Page Up/Down at the
edges, Home and End load the neighbouring, first or last page from the store. The page is
re-read every second (runs of other processes change too) and when this process's bus says a
run changed; cells are updated in place when the rows are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Input, Label
from textual.widgets.data_table import ColumnKey
from textual.worker import Worker

from core.errors import OrchestratorError
from core.records import Run, RunStatus, RunSummary
from core.timeutil import parse_ts
from tui import actions
from tui.format import duration_text, holder_cell, status_text
from tui.screens.listing import FilterField, TimedReload

PAGE = 100

# (column key = engine sort key, header label, width; the task column takes what is left; the
# worker column, last, shows only while the page holds a run a worker drives or waits for)
COLUMNS: list[tuple[str, str]] = [
    ("task", "Task"),
    ("repo", "Repository"),
    ("status", "Status"),
    ("phases", "Phases"),
    ("findings", "Findings"),
    ("cost", "Cost"),
    ("started", "Started"),
    ("duration", "Duration"),
    ("worker", "Worker"),
]
WIDTHS = {
    "repo": 16,
    "status": 11,
    "phases": 9,
    "findings": 17,
    "cost": 9,
    "started": 12,
    "duration": 8,
    "worker": 12,
}
MIN_TASK_WIDTH = 20
# The store sorts by every column (the engine's runs_page); these start ascending, the
# others descending.
ASCENDING_FIRST = ("task", "repo", "status", "worker")
# The actions offered only for runs they can act on (see tui.actions.applies).
_RUN_ACTIONS = ("resume", "cancel", "apply", "clean")


def parse_filter(text: str) -> tuple[str | None, str | None]:
    """Split "status:failed words" into (status, words); an unknown status stays a word."""
    status = None
    words = []
    for word in text.split():
        name = word.removeprefix("status:")
        if word.startswith("status:") and name in {s.value for s in RunStatus}:
            status = name
        else:
            words.append(word)
    return status, " ".join(words) or None


def phases_text(s: RunSummary) -> Text:
    total, done = s.phases_total, s.phases_completed
    if total == 0:
        return Text("-", style="bright_black")
    filled = round(5 * done / total)
    return Text.assemble(
        ("█" * filled, "green"), ("░" * (5 - filled), "bright_black"), f" {done}/{total}"
    )


def findings_text(s: RunSummary) -> Text:
    parts: list[tuple[str, str]] = []
    for key, short, style in (
        ("major", "maj", "bold red"),
        ("medium", "med", "yellow"),
        ("minor", "min", "cyan"),
    ):
        n = s.findings.get(key, 0)
        if n:
            parts.append((f"{n} {short} ", style))
    return Text.assemble(*parts) if parts else Text("-", style="bright_black")


def cost_text(s: RunSummary) -> Text:
    if s.cost_usd > 0:
        return Text(f"${s.cost_usd:,.2f}")
    if s.tokens:
        amount = f"{s.tokens / 1000:.1f}k" if s.tokens >= 1000 else str(s.tokens)
        return Text(f"{amount} tok")
    return Text("-", style="bright_black")


def short_time(stamp: str, now: datetime) -> str:
    """Local start time: "09:00" today, "Nov 20 09:00" this year, else the date."""
    when = parse_ts(stamp).astimezone()
    local_now = now.astimezone()
    if when.date() == local_now.date():
        return when.strftime("%H:%M")
    if when.year == local_now.year:
        return when.strftime("%b %d %H:%M")
    return when.strftime("%Y-%m-%d")


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def run_cells(s: RunSummary, now: datetime, task_width: int = 60) -> tuple[Text | str, ...]:
    r = s.run
    started = r.started_at or r.created_at
    end = parse_ts(r.completed_at) if r.completed_at else None
    if end is None and r.status not in (
        RunStatus.PENDING,
        RunStatus.PLANNING,
        RunStatus.EXECUTING,
        RunStatus.WAITING,
    ):
        end = parse_ts(r.updated_at) if r.updated_at else None
    return (
        clip(r.task, task_width),
        clip(Path(r.repo).name or r.repo, WIDTHS["repo"]),
        status_text(str(r.status)),
        phases_text(s),
        findings_text(s),
        cost_text(s),
        short_time(started, now),
        duration_text(parse_ts(started), end or now),
        holder_cell(r, WIDTHS["worker"]),
    )


class RunsTable(DataTable[Any]):
    """A DataTable of one page that asks its screen for the next page at its edges."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home,g", "first_run", "First run", show=False),
        Binding("end,G", "last_run", "Last run", show=False),
        Binding("ctrl+home", "first_run", "First run", show=False),
        Binding("ctrl+end", "last_run", "Last run", show=False),
    ]

    @dataclass
    class Edge(Message):
        """The cursor wants to leave the page: "next", "prev", "first" or "last"."""

        where: str

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.Edge("next"))
        else:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.cursor_row <= 0:
            self.post_message(self.Edge("prev"))
        else:
            super().action_cursor_up()

    def action_page_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.Edge("next"))
        else:
            super().action_page_down()

    def action_page_up(self) -> None:
        if self.cursor_row <= 0:
            self.post_message(self.Edge("prev"))
        else:
            super().action_page_up()

    def action_first_run(self) -> None:
        self.post_message(self.Edge("first"))

    def action_last_run(self) -> None:
        self.post_message(self.Edge("last"))


class RunsScreen(TimedReload, FilterField):
    """Every run with its status, progress, findings and cost; `/` filters, `s` sorts."""

    SECTION = "Runs"
    SUB_TITLE = "Runs"
    AUTO_FOCUS = "#runs"
    DEFAULT_CSS = """
    RunsScreen #bar { height: 1; padding: 0 1; background: $boost; }
    RunsScreen #position { width: 1fr; }
    RunsScreen #sorting { width: auto; color: $text-muted; }
    RunsScreen #filter { display: none; margin: 0 1; }
    RunsScreen.filtering #filter { display: block; }
    RunsScreen #empty { display: none; padding: 2 4; color: $text-muted; }
    RunsScreen.empty #empty { display: block; }
    RunsScreen.empty RunsTable { display: none; }
    RunsScreen RunsTable { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", show=True),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse sort", show=False),
        Binding("R", "resume", "Resume"),
        Binding("C", "cancel", "Cancel run"),
        Binding("E", "export", "Export", show=False),
        Binding("A", "apply", "Apply", show=False),
        Binding("X", "clean", "Clean up", show=False),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page_offset = 0
        self.total = 0
        self.sort = "started"
        self.descending = True
        self.task_width = 60
        self.summaries: list[RunSummary] = []
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._filter_timer: Timer | None = None
        self._loading: Worker[None] | None = None
        self._offered: tuple[bool | None, ...] = ()
        # The worker column shows while the page holds a run a worker drives or waits for.
        self.worker_shown = False

    @property
    def current_run_id(self) -> str | None:
        """The highlighted run, for actions and the command palette."""
        table = self.query_one(RunsTable)
        if not self.summaries or not (0 <= table.cursor_row < len(self.summaries)):
            return None
        return self.summaries[table.cursor_row].run.id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter: words in task, repository, id; status:failed",
            id="filter",
            disabled=True,  # enabled while shown, so the hidden field never takes focus
        )
        with Horizontal(id="bar"):
            yield Label("", id="position")
            yield Label("", id="sorting")
        yield RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Label(
            "No runs yet. Press 3 to start one from the form, or run `orchestrator demo`.",
            id="empty",
        )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(RunsTable)
        self.task_width = self._task_width()
        self._add_columns(table)
        self.watch(table, "scroll_x", lambda _x: self._label_position(), init=False)
        self.load(0, "first")
        self._timer = self.set_interval(self.REFRESH_SECONDS, self._timed_reload)
        table.focus()

    def shown_columns(self) -> list[tuple[str, str]]:
        """The columns of COLUMNS the table has now (the worker column only while needed)."""
        return [(key, label) for key, label in COLUMNS if key != "worker" or self.worker_shown]

    def _add_columns(self, table: RunsTable) -> None:
        for key, label in self.shown_columns():
            table.add_column(label, key=key, width=WIDTHS.get(key, self.task_width))
        self._label_sort()

    def _task_width(self) -> int:
        """What the task column gets of the terminal width after the fixed columns and padding."""
        shown = self.shown_columns()
        fixed = sum(WIDTHS.get(key, 0) for key, _ in shown) + 2 * len(shown) + 2
        return max(MIN_TASK_WIDTH, self.app.size.width - fixed)

    def on_resize(self) -> None:
        width = self._task_width()
        if self._timer is not None and width != self.task_width:  # mounted
            self.task_width = width
            table = self.query_one(RunsTable)
            table.columns[ColumnKey("task")].width = width
            self.summaries = []  # rebuild the rows with the new clipping
            self.reload()

    # ---- loading -------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the current page, keeping the cursor on the same run; a load under way (a page
        the user moved to) is not replaced by it."""
        if self._loading is not None and not self._loading.is_finished:
            return
        self.load(self.page_offset, "keep")

    def run_changed(self, run_id: str) -> None:
        """Called by the app when a run of this process changed."""
        self.reload()

    def load(self, offset: int, cursor: str | int) -> None:
        """Read the page at `offset` in a worker; `cursor` is "first", "last", "keep" or a row."""
        self._loading = self._load(offset, cursor)

    @work(group="load", exclusive=True)
    async def _load(self, offset: int, cursor: str | int) -> None:
        status, words = parse_filter(self.query_text)
        engine = self.orchestrator.engine
        try:
            total = await engine.count_runs(query=words, status=status)
            if total and offset >= total:
                offset = (total - 1) // PAGE * PAGE
            offset = max(0, offset)
            rows = await engine.runs_page(
                query=words,
                status=status,
                sort=self.sort,
                descending=self.descending,
                limit=PAGE,
                offset=offset,
            )
        except OrchestratorError as exc:
            self.notify(str(exc), title="runs", severity="error")
            return
        self._show(rows, total, offset, cursor)

    def _show(self, rows: list[RunSummary], total: int, offset: int, cursor: str | int) -> None:
        tables = self.query(RunsTable)
        if not tables:  # not composed yet, or already closing
            return
        table = tables.first()
        keep = self.current_run_id if cursor == "keep" else None
        keep_row = table.cursor_row
        now = self.orchestrator.now()
        new_keys = [s.run.id for s in rows]
        same_rows = new_keys == [s.run.id for s in self.summaries] and table.row_count == len(rows)
        held = any(holder_cell(s.run, 1).plain for s in rows)
        if held != self.worker_shown:  # the column comes and goes with the page's worker runs
            self.worker_shown, same_rows = held, False
            self.task_width = self._task_width()
            table.clear(columns=True)
            self._add_columns(table)
        shown = self.shown_columns()
        cells = {s.run.id: run_cells(s, now, self.task_width)[: len(shown)] for s in rows}
        if same_rows:
            for run_id, values in cells.items():
                old = self._cells.get(run_id)
                for (key, _), value, before in zip(shown, values, old or (), strict=False):
                    if value != before:
                        table.update_cell(run_id, key, value)
        else:
            table.clear()
            for run_id, values in cells.items():
                table.add_row(*values, key=run_id)
        self.summaries, self._cells, self.total, self.page_offset = rows, cells, total, offset
        self.set_class(total == 0 and not self.query_text, "empty")
        if rows:
            if cursor == "first":
                target = 0
            elif cursor == "last":
                target = len(rows) - 1
            elif cursor == "keep":
                target = new_keys.index(keep) if keep in new_keys else min(keep_row, len(rows) - 1)
            else:
                target = max(0, min(int(cursor), len(rows) - 1))
            if target != table.cursor_row or not same_rows:
                table.move_cursor(row=target, animate=False)
        self._label_position()
        self._offer_actions()

    def _label_position(self) -> None:
        if self.total == 0:
            text = "no runs match the filter" if self.query_text else "no runs"
        else:
            row = self.page_offset + self.query_one(RunsTable).cursor_row + 1
            text = (
                f"run {row:,} of {self.total:,} · rows {self.page_offset + 1:,}–"
                f"{self.page_offset + len(self.summaries):,} loaded"
            )
        if self.query_text:
            text += f' · filter "{self.query_text}"'
        hidden = self.hidden_columns()
        if hidden:  # a narrow terminal: say what is off screen and how to see it
            text = text.split(" · rows")[0] + " · → shows " + ", ".join(hidden)
        self.query_one("#position", Label).update(text)

    def hidden_columns(self) -> list[str]:
        """The columns (in words) that do not fit the table's width where it is scrolled to."""
        tables = self.query(RunsTable)
        if not tables or not tables.first().size.width:
            return []
        table = tables.first()
        right = table.scroll_x + table.scrollable_content_region.width
        edge, hidden = 0, []
        for key, label in self.shown_columns():
            edge += WIDTHS.get(key, self.task_width) + 2 * table.cell_padding
            if edge > right:
                hidden.append(label.lower())
        return hidden

    def _label_sort(self) -> None:
        arrow = "↓" if self.descending else "↑"
        label = dict(COLUMNS)[self.sort]
        self.query_one("#sorting", Label).update(f"sorted by {label.lower()} {arrow}")
        table = self.query_one(RunsTable)
        for key, text in COLUMNS:
            column = table.columns.get(key)  # type: ignore[call-overload]
            if column is not None:
                column.label = Text(f"{text} {arrow}" if key == self.sort else text)
        table.refresh()

    @on(RunsTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._label_position()
        self._offer_actions()

    def _offer_actions(self) -> None:
        """Redraw the footer's keys when what the highlighted run allows changed."""
        offered = tuple(self.check_action(a, ()) for a in _RUN_ACTIONS)
        if offered != self._offered:
            self._offered = offered
            self.refresh_bindings()

    @property
    def current_run(self) -> Run | None:
        """The highlighted run, as last read."""
        table = self.query_one(RunsTable)
        if not self.summaries or not (0 <= table.cursor_row < len(self.summaries)):
            return None
        return self.summaries[table.cursor_row].run

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Run actions are offered only for a run they can act on."""
        if action not in _RUN_ACTIONS or not self.is_mounted:
            return True
        run = self.current_run
        return run is not None and actions.applies(action, run)

    @on(RunsTable.Edge)
    def _edge(self, event: RunsTable.Edge) -> None:
        last_page = max(0, (self.total - 1) // PAGE * PAGE)
        if event.where == "next" and self.page_offset + len(self.summaries) < self.total:
            self.load(self.page_offset + PAGE, "first")
        elif event.where == "prev" and self.page_offset > 0:
            self.load(self.page_offset - PAGE, "last")
        elif event.where == "first":
            self.load(0, "first")
        elif event.where == "last":
            self.load(last_page, "last")

    @on(RunsTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort:
            self.descending = not self.descending
        else:
            self.sort, self.descending = key, key not in ASCENDING_FIRST
        self._resort()

    # ---- filter and sort -----------------------------------------------------------------------

    def filter_list(self) -> Widget:
        return self.query_one(RunsTable)

    def refilter(self) -> None:
        """Read the first page for the new filter once typing pauses."""
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(0.15, lambda: self.load(0, "first"))

    def action_back(self) -> None:
        """Esc: leave the filter field, then clear the filter."""
        self.leave_filter()

    def action_sort_next(self) -> None:
        """`s`: sort by the next column the table shows (the worker column only while shown)."""
        keys = [key for key, _ in self.shown_columns()]
        i = keys.index(self.sort) if self.sort in keys else -1
        self.sort = keys[(i + 1) % len(keys)]
        self.descending = self.sort not in ASCENDING_FIRST
        self._resort()

    def action_sort_reverse(self) -> None:
        self.descending = not self.descending
        self._resort()

    def sort_by(self, key: str, *, descending: bool | None = None) -> None:
        """Sort by one column (a key of COLUMNS)."""
        self.sort = key
        self.descending = key not in ASCENDING_FIRST if descending is None else descending
        self._resort()

    def _resort(self) -> None:
        self._label_sort()
        self.summaries = []  # force a rebuild: the order changed
        self.load(0, "first")

    def palette_commands(self) -> list[SystemCommand]:
        cmds = [
            SystemCommand(
                f"Sort runs by {label.lower()}",
                "Order the runs table by this column (s cycles, S reverses)",
                lambda key=key: self.sort_by(key),
            )
            for key, label in COLUMNS
        ]
        cmds.append(
            SystemCommand("Filter runs", "Type words or status:NAME (/)", self.action_filter)
        )
        return cmds

    # ---- actions -------------------------------------------------------------------------------

    def action_open(self) -> None:
        run_id = self.current_run_id
        if run_id is not None:
            self.orchestrator.open_run(run_id)

    def _act(self, action: Any) -> None:
        run_id = self.current_run_id
        if run_id is None:
            self.notify("no run selected", severity="warning")
            return
        self.orchestrator.spawn_action(action, run_id)

    def action_resume(self) -> None:
        self._act(actions.resume)

    def action_cancel(self) -> None:
        self._act(actions.cancel)

    def action_export(self) -> None:
        self._act(actions.export)

    def action_apply(self) -> None:
        self._act(actions.apply)

    def action_clean(self) -> None:
        self._act(actions.clean)
