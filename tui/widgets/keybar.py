"""A one-line footer of the keys the focused pane and its screen answer to.

Textual's Footer mounts one widget per key and rebuilds them all whenever the focus moves, which
costs tens of milliseconds a time; the run view moves the focus on most tab keys while a log may
be streaming, so this footer draws the same information as one line of text instead.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static


class KeyBar(Static):
    """The shown bindings of the focused widget, its ancestors, the screen and the app."""

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"keybar--key", "keybar--description"}
    DEFAULT_CSS += """
    KeyBar > .keybar--key { color: $footer-key-foreground; text-style: bold; }
    KeyBar > .keybar--description { color: $footer-description-foreground; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)
        self.call_after_refresh(self._draw)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _changed(self, screen: Screen[object]) -> None:
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._draw)

    def keys_text(self) -> Text:
        """The footer's line: "key description" for every shown, enabled binding, nearest first."""
        key_style = self.get_component_rich_style("keybar--key")
        description_style = self.get_component_rich_style("keybar--description")
        text = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        palette = None
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if binding.key == self.app.COMMAND_PALETTE_BINDING:
                palette = binding
                continue
            if not binding.show or not enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            text.append(f" {self.app.get_key_display(binding)} ", style=key_style)
            text.append(f"{binding.description} ", style=description_style)
        if palette is not None and self.app.ENABLE_COMMAND_PALETTE:
            text.append(f" {self.app.get_key_display(palette)} ", style=key_style)
            text.append("palette ", style=description_style)
        return text

    def _draw(self) -> None:
        if self.is_attached:
            self.update(self.keys_text(), layout=False)
