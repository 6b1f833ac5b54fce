"""`?`: every key binding active where the user pressed it, with the sections and conventions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static


@dataclass(frozen=True)
class KeyHelp:
    """One binding as listed: the key as shown, what it does, and where it applies."""

    key: str
    description: str
    where: str


class HelpModal(ModalScreen[None]):
    """A table of bindings gathered from the screen the user was on; Esc or `?` closes it."""

    DEFAULT_CSS = """
    HelpModal { align: center middle; }
    HelpModal > Vertical {
        width: 90; max-width: 100%; height: 90%;
        padding: 1 2; border: thick $accent; background: $surface;
    }
    HelpModal #title { text-style: bold; }
    HelpModal #conventions { color: $text-muted; margin-bottom: 1; }
    HelpModal DataTable { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def __init__(self, keys: list[KeyHelp], *, where: str) -> None:
        super().__init__()
        self.entries = keys
        self.where = where

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Keys · {self.where}", id="title")
            yield Static(
                "1 runs · 2 interventions · 3 new run · Esc backs out · / filters · "
                "ctrl+p command palette",
                id="conventions",
            )
            yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Does", "Where")
        for k in self.entries:
            table.add_row(k.key, k.description, k.where)
        table.focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
