"""Section 2: pending interventions of every run (also runs of other processes), and answered ones.

Enter on a pending row opens its decision modal; rows come from the store, re-read every second.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label

from core.errors import OrchestratorError
from core.records import Intervention
from tui.format import answer_note, local_time, status_text
from tui.screens.listing import ListSection

# Answered interventions shown below the pending ones, newest first.
HISTORY = 50


class InterventionsScreen(ListSection[Intervention]):
    """Pending decisions first; Enter answers one, `o` opens its run, `h` shows answered ones."""

    SECTION = "Interventions"
    SUB_TITLE = "Interventions"
    AUTO_FOCUS = "#interventions"
    COLUMNS = (
        ("Status", "status"),
        ("Kind", "kind"),
        ("Run", "run"),
        ("Reason", "reason"),
        ("Asked", "asked"),
        ("Note", "note"),
    )
    DEFAULT_CSS = """
    InterventionsScreen #bar { height: 1; padding: 0 1; background: $boost; }
    InterventionsScreen #summary { width: 1fr; }
    InterventionsScreen DataTable { height: 1fr; }
    InterventionsScreen #empty { display: none; padding: 2 4; color: $text-muted; }
    InterventionsScreen.empty #empty { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,a", "answer", "Answer"),
        Binding("o", "open_run", "Open run"),
        Binding("h", "toggle_history", "Answered too"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.show_history = True

    @property
    def current_run_id(self) -> str | None:
        item = self.current
        return item.run_id if item is not None else None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="bar"):
            yield Label("", id="summary")
        yield DataTable(id="interventions", cursor_type="row", zebra_stripes=True)
        yield Label(
            "Nothing waits for a decision. Runs ask here before risky phases, after failed "
            "phases (when configured) and on merge conflicts.",
            id="empty",
        )
        yield Footer()

    def run_changed(self, run_id: str) -> None:
        self.reload()

    @work(group="load", exclusive=True)
    async def _load(self) -> None:
        engine = self.orchestrator.engine
        try:
            if self.show_history:
                every = await engine.interventions()
                pending = [i for i in every if str(i.status) == "pending"]
                answered = [i for i in every if str(i.status) != "pending"]
                answered.sort(key=lambda i: i.resolved_at or i.created_at, reverse=True)
                items = pending + answered[:HISTORY]
            else:
                items = await engine.interventions(pending_only=True)
        except OrchestratorError as exc:
            self.notify(str(exc), title="interventions", severity="error")
            return
        self._show(items)

    def _show(self, items: list[Intervention]) -> None:
        if not self._fill(items, [self._cells(i) for i in items]):
            return
        n = sum(1 for i in items if str(i.status) == "pending")
        self.query_one("#summary", Label).update(
            f"{n} pending" + (" · answered ones below (h hides them)" if self.show_history else "")
        )

    @staticmethod
    def _cells(i: Intervention) -> tuple[Any, ...]:
        return (
            status_text(str(i.status)),
            str(i.kind),
            i.run_id,
            i.reason if len(i.reason) <= 64 else i.reason[:63] + "…",
            local_time(i.created_at),
            Text(answer_note(i), style="dim"),
        )

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_answer()

    def action_answer(self) -> None:
        item = self.current
        if item is None:
            return
        if str(item.status) != "pending":
            note = answer_note(item)
            self.notify(f"intervention {item.id} was {item.status}" + (f": {note}" if note else ""))
            return
        self.orchestrator.answer(item)

    def palette_commands(self) -> list[SystemCommand]:
        return [
            SystemCommand(
                "Answer the selected intervention",
                "Open its decision modal (Enter)",
                self.action_answer,
            ),
            SystemCommand(
                "Show or hide answered interventions",
                "Answered ones are listed below the pending ones (h)",
                self.action_toggle_history,
            ),
        ]

    def action_toggle_history(self) -> None:
        self.show_history = not self.show_history
        self.reload()
