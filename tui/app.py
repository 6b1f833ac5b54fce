"""The Textual app: sections (runs, interventions, new run) as modes, one engine in the same loop."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from core.errors import OrchestratorError
from core.records import RunStatus

if TYPE_CHECKING:
    from core.engine import Engine


class OrchestratorApp(App[int]):
    """The orchestrator's terminal UI; the engine runs in this app's event loop."""

    TITLE = "Agent Orchestrator"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('runs')", "Runs"),
        Binding("2", "switch_mode('interventions')", "Interventions"),
        Binding("3", "switch_mode('new_run')", "New run"),
        Binding("question_mark", "help", "Keys"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        initial_run: str | None = None,
        auto_approve: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.initial_run = initial_run
        self.auto_approve = auto_approve
        self._clock = clock

    def now(self) -> datetime:
        """The current time (aware, UTC) used for durations of active runs; fixed in snapshot tests."""
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def open_run(self, run_id: str) -> None:
        """Show one run's view on top of the current section."""
        from tui.screens.run_view import RunScreen

        self.push_screen(RunScreen(run_id))

    def start_engine_task(self, run_id: str, *, resume: bool = False) -> None:
        """Drive a stored run (execute or resume) as a worker in this loop."""
        self.run_worker(
            self._drive(run_id, resume=resume),
            group="engine",
            name=f"run {run_id}",
            exit_on_error=False,
        )

    async def _drive(self, run_id: str, *, resume: bool) -> None:
        engine = self.engine
        try:
            if resume:
                run = await engine.resume_run(run_id, auto_approve=self.auto_approve)
            else:
                run = await engine.execute_run(run_id, auto_approve=self.auto_approve)
        except OrchestratorError as exc:
            self.notify(str(exc), title=f"run {run_id}", severity="error", timeout=10)
            return
        if run.status is not RunStatus.COMPLETED:
            self.notify(f"run {run.id} {run.status}", severity="warning")
