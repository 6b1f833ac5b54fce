"""`?`: every key binding active where the user pressed it, with the sections and conventions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label, Static


@dataclass(frozen=True)
class KeyHelp:
    """One binding as listed: the key as shown, what it does, and where it applies."""

    key: str
    description: str
    where: str


# Textual's own short binding descriptions, said in full in the key help.
_DESCRIPTIONS = {"palette": "Command palette: every action, runs by name"}


def key_help(app: App[Any], screen: Screen[Any]) -> list[KeyHelp]:
    """Every binding the user can press on `screen`: the app's, ours on every widget of the
    screen (also panes not focused now), and those of the focused widget and its parents."""
    found: dict[tuple[str, str], KeyHelp] = {}
    nodes: list[Any] = [app, screen]
    nodes += [w for w in screen.walk_children() if type(w).__module__.startswith("tui.")]
    focused = screen.focused
    if focused is not None:
        nodes += [focused, *focused.ancestors_with_self]
    for node in nodes:
        for binding in _bindings_of(node):
            if not binding.description:
                continue
            key = app.get_key_display(binding)
            description = _DESCRIPTIONS.get(binding.description, binding.description)
            found.setdefault((key, description), KeyHelp(key, description, _node_name(node)))
    return list(found.values())


def _bindings_of(node: Any) -> list[Binding]:
    """The bindings a DOM node declares (its own and inherited BINDINGS)."""
    bindings = getattr(node, "_bindings", None)
    if bindings is None:
        return []
    return [b for group in bindings.key_to_bindings.values() for b in group]


def _node_name(node: Any) -> str:
    if isinstance(node, App):
        return "everywhere"
    return screen_name(node) if isinstance(node, Screen) else widget_name(type(node))


def widget_name(kind: type) -> str:
    """A widget's name in words ("PhaseTimeline" → "Phase timeline"), never a class name."""
    words = re.findall(r"[A-Z][a-z0-9]*|[a-z0-9]+", kind.__name__)
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else kind.__name__


def screen_name(screen: Screen[Any]) -> str:
    """The section name a screen declares (SECTION), else its class name."""
    return getattr(screen, "SECTION", None) or type(screen).__name__


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
