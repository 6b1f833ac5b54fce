"""The decision modal for one pending intervention: what is asked, what approve and reject do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from core.records import Intervention, Phase


@dataclass(frozen=True)
class Decision:
    """The person's answer; a new budget only for `budget` interventions."""

    intervention_id: str
    approve: bool
    note: str | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None


def split_actions(action_required: str) -> tuple[str, str]:
    """("what approve does", "what reject does") from "approve: ...; reject: ..."."""
    approve, reject = "", ""
    for part in action_required.split(";"):
        head, _, rest = part.strip().partition(":")
        if head.strip().lower() == "approve":
            approve = rest.strip()
        elif head.strip().lower() == "reject":
            reject = rest.strip()
    if not approve and not reject:
        return action_required, ""
    return approve, reject


class InterventionModal(ModalScreen[Decision | None]):
    """Approve with `a`, reject with `r` (or the buttons); Esc leaves the intervention pending."""

    DEFAULT_CSS = """
    InterventionModal { align: center middle; }
    InterventionModal > Vertical {
        width: 84; max-width: 100%; height: auto; max-height: 100%;
        padding: 0 2; border: thick $warning; background: $surface;
    }
    InterventionModal #title { text-style: bold; color: $warning; }
    InterventionModal #task { color: $text-muted; }
    InterventionModal #details { height: auto; max-height: 12; margin: 1 0; }
    InterventionModal .what { width: 12; color: $text-muted; }
    InterventionModal .row { height: auto; }
    InterventionModal .row .value { width: 1fr; }
    InterventionModal #approve-does { color: $success; }
    InterventionModal #reject-does { color: $error; }
    InterventionModal #budget { height: auto; }
    InterventionModal #budget Input { width: 1fr; }
    InterventionModal #error { color: $error; height: auto; }
    InterventionModal #error.-empty { display: none; }
    InterventionModal #buttons { height: auto; }
    InterventionModal #buttons Button { margin-right: 1; }
    InterventionModal #queue { color: $text-muted; width: 1fr; content-align: right middle; height: 3; }
    """
    # The buttons hold focus, so `a` and `r` work at once (no query in on_mount: a modal closed
    # before it mounted would raise there and take the app down with the runs it drives).
    AUTO_FOCUS = "#approve"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "decide(True)", "Approve"),
        Binding("r", "decide(False)", "Reject"),
        Binding("n", "focus_note", "Note"),
        Binding("escape", "later", "Later"),
    ]

    def __init__(
        self,
        item: Intervention,
        *,
        task: str = "",
        phase: Phase | None = None,
        waiting: int = 0,
    ) -> None:
        super().__init__()
        self.item = item
        self.run_task = task
        self.phase = phase
        self.waiting = waiting
        self.budget_fields = str(item.kind) == "budget"
        self.closed = False  # dismissed already: Textual's dismiss pops whatever is on top
        self.withdrawn = False  # answered elsewhere or withdrawn: close as soon as it is on top

    def compose(self) -> ComposeResult:
        item = self.item
        approve, reject = split_actions(item.action_required)
        with Vertical():
            yield Label(f"Decision needed: {item.kind} · run {item.run_id}", id="title")
            if self.run_task:
                yield Static(self.run_task, id="task")
            with VerticalScroll(id="details"):
                for what, text, widget_id in (
                    ("Phase", self._phase_text(), "phase"),
                    ("Reason", item.reason, "reason"),
                    ("On approve", approve or "the run continues", "approve-does"),
                    ("On reject", reject or "the run does not continue this way", "reject-does"),
                ):
                    with Horizontal(classes="row"):
                        yield Label(what, classes="what")
                        yield Static(text, id=widget_id, classes="value")
            if self.budget_fields:
                yield Label("New budget (optional, with approve)", classes="what")
                with Horizontal(id="budget"):
                    yield Input(placeholder="USD, e.g. 2.50", id="budget-usd", type="number")
                    yield Input(
                        placeholder="tokens, e.g. 200000", id="budget-tokens", type="integer"
                    )
            yield Input(placeholder="note (optional), stored with the decision", id="note")
            yield Label("", id="error", classes="-empty")
            with Horizontal(id="buttons"):
                yield Button("Approve (a)", variant="success", id="approve")
                yield Button("Reject (r)", variant="error", id="reject")
                yield Button("Later (Esc)", id="later")
                if self.waiting:
                    yield Label(f"{self.waiting} more waiting", id="queue")
        yield Footer()

    def _phase_text(self) -> str:
        if self.phase is None:
            return "the run as a whole" if self.item.phase_id is None else "(unknown)"
        p = self.phase
        return (
            f"{p.plan_id} {p.name} · risk {p.risk_level} · attempts {p.attempts}/{p.max_attempts}"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "approve":
            self.action_decide(True)
        elif event.button.id == "reject":
            self.action_decide(False)
        else:
            self.action_later()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the note moves to the buttons rather than deciding by accident."""
        event.stop()
        self.query_one("#approve", Button).focus()

    def action_focus_note(self) -> None:
        self.query_one("#note", Input).focus()

    def action_decide(self, approve: bool) -> None:
        if self.closed:
            return
        note = self.query_one("#note", Input).value.strip() or None
        usd: float | None = None
        tokens: int | None = None
        if self.budget_fields and approve:
            usd_text = self.query_one("#budget-usd", Input).value.strip()
            tokens_text = self.query_one("#budget-tokens", Input).value.strip()
            try:
                usd = float(usd_text) if usd_text else None
                tokens = int(tokens_text) if tokens_text else None
            except ValueError:
                self._error("The budget must be a number.")
                return
            if (usd is not None and usd <= 0) or (tokens is not None and tokens <= 0):
                self._error("The budget must be more than zero.")
                return
        self._close(Decision(self.item.id, approve, note, usd, tokens))

    def _error(self, text: str) -> None:
        error = self.query_one("#error", Label)
        error.update(text)
        error.set_class(not text, "-empty")

    def action_later(self) -> None:
        self._close(None)

    def withdraw(self) -> None:
        """Close without a decision: now if on top, else when the screens above it close."""
        self.withdrawn = True
        if self.is_active:
            self._close(None)

    def on_screen_resume(self) -> None:
        if self.withdrawn:
            self._close(None)

    def _close(self, decision: Decision | None) -> None:
        """Dismiss once, and only while on top (a second dismiss would pop the screen below)."""
        if self.closed or not self.is_active:
            return
        self.closed = True
        self.dismiss(decision)
