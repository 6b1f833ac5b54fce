"""The phase timeline: phases in dependency order, indented by depth, with what each depends on."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from core.records import Phase
from core.timeutil import parse_ts
from tui.format import duration_text, status_text

STATUS_MARKS = {
    "pending": "·",
    "in_progress": "▶",
    "completed": "✓",
    "failed": "✗",
    "skipped": "⊘",
}
RISK_STYLES = {"low": "dim", "medium": "", "high": "bold yellow", "critical": "bold red"}
COLUMNS = ("phase", "status", "tries", "duration", "risk", "depends on", "commit")
DEPENDS = COLUMNS.index("depends on")
# The depends-on column's header where its ids get less room than "depends on" takes.
SHORT_DEPENDS_LABEL = "deps"


def dependency_order(phases: Sequence[Phase]) -> list[tuple[Phase, int]]:
    """Phases in topological order (ties by plan position) with their depth in the graph.

    A phase's depth is one more than its deepest dependency; dependencies on unknown ids are
    ignored, and phases caught in a cycle (never produced by the planner) come last, in plan order.
    """
    by_id = {p.plan_id: p for p in phases}
    deps = {p.plan_id: [d for d in p.dependencies if d in by_id] for p in phases}
    waiting = {pid: len(d) for pid, d in deps.items()}
    dependants: dict[str, list[str]] = {pid: [] for pid in by_id}
    for pid, ds in deps.items():
        for d in ds:
            dependants[d].append(pid)
    depth: dict[str, int] = {}
    ready = sorted((p for p in phases if waiting[p.plan_id] == 0), key=lambda p: p.seq)
    order: list[tuple[Phase, int]] = []
    while ready:
        phase = ready.pop(0)
        level = max((depth[d] + 1 for d in deps[phase.plan_id]), default=0)
        depth[phase.plan_id] = level
        order.append((phase, level))
        for child in dependants[phase.plan_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(by_id[child])
        ready.sort(key=lambda p: p.seq)
    placed = {p.plan_id for p, _ in order}
    order += [(p, 0) for p in sorted(phases, key=lambda p: p.seq) if p.plan_id not in placed]
    return order


def phase_duration(phase: Phase, now: datetime) -> str:
    """How long the phase ran (so far, when it is still in progress)."""
    if not phase.started_at:
        return "—"
    end = parse_ts(phase.completed_at) if phase.completed_at else now
    return duration_text(parse_ts(phase.started_at), end)


def _width(cell: Text | str) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


MIN_NAME_WIDTH = 14  # the phase column never shrinks below this; the table scrolls instead


def id_prefix(plan_ids: Sequence[str]) -> str:
    """The start every plan id shares, up to and including its last separator ("phase-" of
    "phase-001" and "phase-002"); empty when they share none."""
    if len(plan_ids) < 2:
        return ""
    shared = os.path.commonprefix(list(plan_ids))
    cut = max(shared.rfind(sep) for sep in "-_.") + 1
    return shared[:cut]


def fit_dependencies(dependencies: Sequence[str], width: int, prefix: str = "") -> str:
    """The depends-on cell in at most `width` cells: every id; else the ids without the run's
    shared `prefix`; else the first with a count of the others; else that, cut with an ellipsis."""
    if not dependencies:
        return "—"
    short = [d.removeprefix(prefix) or d for d in dependencies]
    rest = f" +{len(short) - 1}" if len(short) > 1 else ""
    for text in (", ".join(dependencies), ", ".join(short), short[0] + rest):
        if cell_len(text) <= width:
            return text
    cut = Text(short[0] + rest)
    cut.truncate(max(width, 1), overflow="ellipsis")
    return cut.plain


class PhaseTimeline(DataTable[Text | str]):
    """One row per phase; the highlighted row is the selected phase (Enter shows its diff).

    Columns are re-measured whenever a cell changes (a status or commit arriving while the run goes
    on). The phase names are shortened with an ellipsis so the other columns fit the width; below
    the names' minimum the depends-on ids are shortened too, so status and commit stay in view.
    """

    DEFAULT_CSS = """
    PhaseTimeline { height: auto; max-height: 12; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Phase diff"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.phases: list[Phase] = []
        self._names: dict[str, Text | str] = {}  # phase id -> its full name cell
        self._depends: dict[str, list[str]] = {}  # phase id -> the plan ids it depends on
        self._prefix = ""  # what every plan id of the run starts with (see id_prefix)

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    @property
    def selected_phase(self) -> Phase | None:
        """The phase under the cursor, if any."""
        if not self.phases or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        return next((p for p in self.phases if p.id == key), None)

    def show_phases(self, phases: Sequence[Phase], now: datetime) -> None:
        """Show these phases; the cursor stays on the same phase when it still exists."""
        ordered = dependency_order(phases)
        self.phases = [p for p, _ in ordered]
        current = self.selected_phase
        same_rows = [str(k.value) for k in self.rows] == [p.id for p in self.phases]
        rows = [self._cells(phase, level, now) for phase, level in ordered]
        if same_rows:
            for phase, cells in zip(self.phases, rows, strict=True):
                old = self.get_row(phase.id)
                for column, value, before in zip(COLUMNS[1:], cells[1:], old[1:], strict=True):
                    # The fitted columns are set by _fit_columns; the others when they change
                    # (e.g. only the duration of a running phase).
                    if column != COLUMNS[DEPENDS] and value != before:
                        self.update_cell(phase.id, column, value, update_width=True)
            self._keep_full_cells(rows)
            self._fit_columns()
            self._remeasure()
            return
        self.clear()
        self._keep_full_cells(rows)
        for phase, cells in zip(self.phases, rows, strict=True):
            self.add_row(*cells, key=phase.id)
        if current is not None:
            index = next((i for i, p in enumerate(self.phases) if p.id == current.id), 0)
            self.move_cursor(row=index)
        self._fit_columns()
        self._remeasure()

    def _keep_full_cells(self, rows: list[list[Text | str]]) -> None:
        """Remember the unshortened names and dependencies that _fit_columns fits to the width."""
        self._names = {p.id: cells[0] for p, cells in zip(self.phases, rows, strict=True)}
        self._depends = {p.id: list(p.dependencies) for p in self.phases}
        self._prefix = id_prefix([p.plan_id for p in self.phases])

    def _remeasure(self) -> None:
        """Have the table measure its columns again now.

        A DataTable re-measures changed cells when it next goes idle, which follows only a message
        of its own; the updates come from the run view's worker, so one is sent here.
        """
        self.call_later(self.refresh)

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Fit the phase names, then the depends-on ids, so every other column fits the width.

        The names give way first (down to MIN_NAME_WIDTH, with an ellipsis); then the ids lose
        their shared prefix, then all but the first (the phase detail lists them whole).
        """
        if not self._names or not self.columns or self.size.width == 0:
            return
        pad = 2 * self.cell_padding
        # Measured from the cells themselves: the table re-measures its columns only when idle.
        rows = [self.get_row(phase_id) for phase_id in self._names if phase_id in self.rows]
        others = sum(
            max([cell_len(name), *(_width(row[i]) for row in rows)]) + pad
            for i, name in enumerate(COLUMNS)
            if i not in (0, DEPENDS)
        )
        room = self.scrollable_content_region.width - others - 2 * pad
        names = max(_width(cell) for cell in self._names.values())
        depends = max(
            cell_len(COLUMNS[DEPENDS]),
            *(cell_len(fit_dependencies(d, 10**6)) for d in self._depends.values()),
        )
        if names + depends > room:
            depends = min(depends, max(len(SHORT_DEPENDS_LABEL), room - MIN_NAME_WIDTH))
        width = max(MIN_NAME_WIDTH, room - depends)
        for phase_id, full in self._names.items():
            cell = full.copy() if isinstance(full, Text) else Text(full)
            cell.truncate(width, overflow="ellipsis")
            if phase_id in self.rows and self.get_cell(phase_id, COLUMNS[0]) != cell:
                self.update_cell(phase_id, COLUMNS[0], cell, update_width=True)
        column = self.columns[ColumnKey(COLUMNS[DEPENDS])]
        label = COLUMNS[DEPENDS] if depends >= cell_len(COLUMNS[DEPENDS]) else SHORT_DEPENDS_LABEL
        relabel = column.label.plain != label
        if relabel:
            column.label = Text(label)
        for phase_id, dependencies in self._depends.items():
            text = fit_dependencies(dependencies, depends, self._prefix)
            if phase_id in self.rows and (relabel or self.get_cell(phase_id, column.key) != text):
                # Updating a cell re-measures its column, the new label included.
                self.update_cell(phase_id, column.key, text, update_width=True)
        self._fix_widths()

    def _fix_widths(self) -> None:
        """Give every column its measured width now, not when the table next goes idle.

        DataTable caches a drawn cell by its update count, not its width: a header drawn between an
        update and that idle measurement (a busy machine paints in between) kept the old widths.
        """
        rows = [self.get_row(phase_id) for phase_id in self._names if phase_id in self.rows]
        for index, column in enumerate(self.ordered_columns):
            column.width = max([cell_len(column.label.plain), *(_width(r[index]) for r in rows)])
            column.auto_width = False
        self.refresh()

    @staticmethod
    def _cells(phase: Phase, level: int, now: datetime) -> list[Text | str]:
        status = str(phase.status)
        name = Text("  " * max(level - 1, 0) + ("└ " if level else ""), style="dim")
        name.append(f"{phase.plan_id} ", style="bold")
        name.append(phase.name)
        mark = Text(f"{STATUS_MARKS.get(status, '?')} ")
        mark.append_text(status_text(status))
        attempts = f"{phase.attempts}/{phase.max_attempts}" if phase.attempts else "—"
        risk = Text(phase.risk_level, style=RISK_STYLES.get(phase.risk_level, ""))
        depends = ", ".join(phase.dependencies) or "—"
        commit = phase.commit[:10] if phase.commit else "—"
        return [name, mark, attempts, phase_duration(phase, now), risk, depends, commit]
