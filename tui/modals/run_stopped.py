"""Shown when a run this app drives stops without completing: what happened and what to do."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

from core.final_word import final_word
from core.records import Run


def advice(run: Run) -> str:
    """What the person can do next with a run in this state (its final word, in the app's terms)."""
    status = str(run.status)
    if status in ("interrupted", "failed") and not final_word(run).resumable:
        return (
            "Resume cannot fix this: the task, the plan or the configuration is the cause. "
            "Read the error, fix it, and start a new run (3)."
        )
    if status == "interrupted":
        return "Resume it to continue from the phase that was running; completed phases are kept."
    if status == "failed":
        return (
            "Read the failing phase's findings and log in the run view. Resume it to retry from "
            "the failed phase (answer any pending intervention first), or start a new run."
        )
    if status == "cancelled":
        return "A cancelled run cannot be resumed; start a new run (3) if you still want it."
    if status == "waiting":
        return "It waits for a decision: answer it in Interventions (2)."
    return "Open the run to see its phases, log and findings."


# What stopped a run, when its stored error says no more than its status.
_STATUS_REASONS = {
    "interrupted": "the process driving it stopped (quit, a signal or a crash) before it finished",
    "cancelled": "it was cancelled",
}


def why(run: Run) -> str:
    """Why the run stopped, without repeating its status."""
    error = (run.error or "").strip()
    status = str(run.status)
    if error and error.rstrip(".").lower() != status:
        return error
    return _STATUS_REASONS.get(status, "no reason was recorded")


class RunStoppedModal(ModalScreen[str | None]):
    """Dismisses with "resume", "open" or None (close)."""

    DEFAULT_CSS = """
    RunStoppedModal { align: center middle; }
    RunStoppedModal > Vertical {
        width: 80; max-width: 100%; height: auto; padding: 1 2;
        border: thick $error; background: $surface;
    }
    RunStoppedModal #title { text-style: bold; color: $error; }
    RunStoppedModal #error { margin-top: 1; }
    RunStoppedModal #advice { margin-top: 1; color: $text-muted; }
    RunStoppedModal Horizontal { height: auto; margin-top: 1; }
    RunStoppedModal Button { margin-right: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("R", "choose('resume')", "Resume"),
        Binding("o", "choose('open')", "Open run"),
        Binding("escape", "choose(None)", "Close"),
    ]

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.stopped_run = run

    @property
    def resumable(self) -> bool:
        word = final_word(self.stopped_run)
        return word.resumable and word.status in ("interrupted", "failed")

    def compose(self) -> ComposeResult:
        run = self.stopped_run
        with Vertical():
            yield Label(f"Run {run.id} {run.status}", id="title")
            yield Static(run.task, id="task")
            yield Static(f"Why: {why(run)}", id="error")
            yield Static(advice(run), id="advice")
            with Horizontal():
                if self.resumable:
                    yield Button("Resume (R)", variant="primary", id="resume")
                yield Button("Open run (o)", id="open")
                yield Button("Close (Esc)", id="close")

        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#resume" if self.resumable else "#open", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters and parameters[0] == "resume":
            return self.resumable
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "close" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
