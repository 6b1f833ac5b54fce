"""The phase timeline: phases in dependency order, indented by depth, with what each depends on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable

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


class PhaseTimeline(DataTable[Text | str]):
    """One row per phase; the highlighted row is the selected phase (Enter shows its diff).

    Columns are re-measured whenever a cell changes (a status or commit arriving while the run goes
    on), and the phase names are shortened with an ellipsis so the other columns fit the width.
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
                    if value != before:  # e.g. only the duration of a running phase
                        self.update_cell(phase.id, column, value, update_width=True)
            self._names = {p.id: cells[0] for p, cells in zip(self.phases, rows, strict=True)}
            self._fit_names()
            self._remeasure()
            return
        self.clear()
        self._names = {p.id: cells[0] for p, cells in zip(self.phases, rows, strict=True)}
        for phase, cells in zip(self.phases, rows, strict=True):
            self.add_row(*cells, key=phase.id)
        if current is not None:
            index = next((i for i, p in enumerate(self.phases) if p.id == current.id), 0)
            self.move_cursor(row=index)
        self._fit_names()
        self._remeasure()

    def _remeasure(self) -> None:
        """Have the table measure its columns again now.

        A DataTable re-measures changed cells when it next goes idle, which follows only a message
        of its own; the updates come from the run view's worker, so one is sent here.
        """
        self.call_later(self.refresh)

    def on_resize(self) -> None:
        self._fit_names()

    def _fit_names(self) -> None:
        """Shorten the phase names (with an ellipsis) so every other column fits the width."""
        if not self._names or not self.columns or self.size.width == 0:
            return
        # Measured from the cells themselves: the table re-measures its columns only when idle.
        rows = [self.get_row(phase_id) for phase_id in self._names if phase_id in self.rows]
        others = sum(
            max([cell_len(name), *(_width(row[i]) for row in rows)]) + 2 * self.cell_padding
            for i, name in enumerate(COLUMNS)
            if i > 0
        )
        room = self.scrollable_content_region.width - others - 2 * self.cell_padding
        width = max(MIN_NAME_WIDTH, room)
        for phase_id, full in self._names.items():
            cell = full.copy() if isinstance(full, Text) else Text(full)
            cell.truncate(width, overflow="ellipsis")
            if phase_id in self.rows and self.get_cell(phase_id, COLUMNS[0]) != cell:
                self.update_cell(phase_id, COLUMNS[0], cell, update_width=True)

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
