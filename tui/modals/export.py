"""Ask for the export format and the file to write; dismisses with an ExportRequest or None."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, RadioButton, RadioSet


@dataclass(frozen=True)
class ExportRequest:
    """What the user picked: "markdown" or "json", and the file to write."""

    fmt: str
    path: Path


class ExportModal(ModalScreen[ExportRequest | None]):
    """The run summary export: format (markdown or JSON) and a file path the user names."""

    DEFAULT_CSS = """
    ExportModal { align: center middle; }
    ExportModal > Vertical {
        width: 72; height: auto; padding: 1 2;
        border: thick $accent; background: $surface;
    }
    ExportModal .title { text-style: bold; margin-bottom: 1; }
    ExportModal RadioSet { layout: horizontal; width: auto; margin-bottom: 1; }
    ExportModal RadioButton { width: auto; margin-right: 2; }
    ExportModal #error { color: $error; height: auto; }
    ExportModal Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
    ExportModal Button { margin-left: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, run_id: str, *, folder: Path | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.folder = folder or Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export run {self.run_id}", classes="title")
            with RadioSet(id="format", compact=True):
                yield RadioButton("Markdown", value=True, id="markdown")
                yield RadioButton("JSON", id="json")
            yield Label("File to write:")
            yield Input(str(self.folder / f"{self.run_id}.md"), id="path", compact=True)
            yield Label("", id="error")
            with Horizontal():
                yield Button("Export", variant="primary", id="export")
                yield Button("Back", id="back")

        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @property
    def fmt(self) -> str:
        pressed = self.query_one("#format", RadioSet).pressed_button
        return "json" if pressed is not None and pressed.id == "json" else "markdown"

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        """Keep the file's suffix in step with the format while the user has not renamed it."""
        path = self.query_one("#path", Input)
        suffix = ".json" if self.fmt == "json" else ".md"
        current = Path(path.value)
        if current.suffix in (".md", ".json"):
            path.value = str(current.with_suffix(suffix))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        text = self.query_one("#path", Input).value.strip()
        error = self.query_one("#error", Label)
        if not text:
            error.update("Name the file to write.")
            return
        path = Path(text).expanduser()
        if not path.parent.is_dir():
            error.update(f"Folder {path.parent} does not exist.")
            return
        if path.is_dir():
            error.update(f"{path} is a folder; name a file.")
            return
        self.dismiss(ExportRequest(self.fmt, path))

    def action_back(self) -> None:
        self.dismiss(None)
