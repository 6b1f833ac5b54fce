"""The Textual app: sections (runs, interventions, new run, analytics, lessons) as modes, one
engine in the same loop.

The app owns the cross-cutting parts: the bus bridge, the queue of pending interventions (shown
as a modal at once, wherever the user is, one after another), engine runs driven as workers, the
key help, and the command palette's commands.

For screens and widgets: `app.engine` is the engine; `app.open_run(run_id)` pushes a run view;
`app.start_engine_task(run_id, resume=...)` drives a run here; the run actions in tui/actions.py
wait on modals, so start them with `app.spawn_action(actions.cancel, run_id)` (Textual's own
`App.run_action` takes action strings); `app.now()` is the clock for durations; a screen with a
`run_changed(run_id)` method is told when a run of this process changes, and one with a
`store_changed()` method when another process (on any machine) committed a change to a shared
PostgreSQL store; a screen's polling timer asks `app.poll_due(its name)` first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen
from textual.worker import Worker

from core.errors import OrchestratorError
from core.records import FINISHED_RUN_STATUSES, Intervention, Run, RunStatus
from tui import actions
from tui.bridge import InterventionsChanged, RunChanged, pump
from tui.decisions import DecisionQueue
from tui.modals.confirm import ConfirmModal
from tui.modals.help import HelpModal, key_help, screen_name
from tui.modals.run_stopped import RunStoppedModal
from tui.palette import RunsProvider
from tui.screens.analytics import AnalyticsScreen
from tui.screens.interventions import InterventionsScreen
from tui.screens.lessons import LessonsScreen
from tui.screens.new_run import NewRunScreen
from tui.screens.runs import RunsScreen

if TYPE_CHECKING:
    from core.bus import Subscription
    from core.engine import Engine

# How often pending interventions are read from the store (runs of other processes).
INTERVENTION_POLL_SECONDS = 1.0
# With a PostgreSQL store whose notifications arrive, the screens' timers read only this often, as
# a safety net: NOTIFY wakes them on each commit. While LISTEN is down they poll at their own pace.
FALLBACK_POLL_SECONDS = 15.0
# How long one wait for a notification lasts before the watcher waits again.
FOLLOW_WAIT_SECONDS = 30.0
# Wake-ups reach the screens at most this often, however busy the store (commits in between
# are read together by the next wake-up).
WAKE_SPACING_SECONDS = 0.2


class OrchestratorApp(App[int]):
    """The orchestrator's terminal UI; the engine runs in this app's event loop."""

    TITLE = "Agent Orchestrator"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "runs": RunsScreen,
        "interventions": InterventionsScreen,
        "new_run": NewRunScreen,
        "analytics": AnalyticsScreen,
        "lessons": LessonsScreen,
    }
    DEFAULT_MODE = "runs"
    COMMANDS = App.COMMANDS | {RunsProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "section('runs')", "Runs"),
        Binding("2", "section('interventions')", "Interventions"),
        Binding("3", "section('new_run')", "New run"),
        Binding("4", "section('analytics')", "Analytics"),
        Binding("5", "section('lessons')", "Lessons"),
        Binding("question_mark", "help", "Keys"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        initial_run: str | None = None,
        auto_approve: bool = False,
        clock: Callable[[], datetime] | None = None,
        start_initial: str | None = None,
        fallback_poll_seconds: float = FALLBACK_POLL_SECONDS,
    ) -> None:
        """`initial_run` opens that run's view; `start_initial` ("execute" or "resume") drives it;
        `fallback_poll_seconds`: how often screens poll while PostgreSQL's NOTIFY wakes them."""
        super().__init__()
        self.engine = engine
        self.initial_run = initial_run
        self.auto_approve = auto_approve
        self.start_initial = start_initial
        self._clock = clock
        # The folder the app was started in: the form's default repository, exports go here.
        self.work_dir = Path.cwd()
        self.initial_result: Run | None = None
        self.decisions = DecisionQueue(self)
        self.interrupted_runs: list[str] = []  # runs this app stopped by quitting, for the hint
        self._subscription: Subscription | None = None
        self._bridge: Worker[None] | None = None
        self._quitting: Worker[None] | None = None
        self.cancelling: set[str] = set()  # runs this app asked to cancel
        self.driven: set[str] = set()  # runs this app drove: their end gets the app's own notice
        self.fallback_poll_seconds = fallback_poll_seconds
        self.store_wakes = 0  # notifications of other processes' commits handled, for tests
        self._following = False  # a watcher waits on the store's notifications (PostgreSQL)
        self._last_polls: dict[str, float] = {}
        self._follower: Worker[None] | None = None

    def now(self) -> datetime:
        """The current time (aware, UTC) used for durations of active runs; fixed in snapshot tests."""
        return self._clock() if self._clock is not None else datetime.now(UTC)

    # ---- lifecycle -----------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._subscription = self.engine.bus.subscribe(max_log_batches=1)
        self._bridge = self.run_worker(
            partial(pump, self._subscription, self),
            group="bridge",
            name="bus bridge",
            exit_on_error=False,
        )
        self.set_interval(INTERVENTION_POLL_SECONDS, self._timed_poll_interventions)
        self.poll_interventions()
        if self.engine.shared_store:
            self._following = True
            follow: Worker[None] = self.run_worker(
                self._follow_store, group="store-follow", exit_on_error=False
            )
            self._follower = follow
        if self.initial_run is not None:
            self.open_run(self.initial_run)
            if self.start_initial is not None:
                self.start_engine_task(self.initial_run, resume=self.start_initial == "resume")

    def on_unmount(self) -> None:
        if self._subscription is not None:
            self._subscription.close()

    # ---- other machines ------------------------------------------------------------------------

    async def _follow_store(self) -> None:
        """Wake the screens on each commit other processes make to the shared store (NOTIFY)."""
        engine = self.engine
        try:
            mark = await engine.change_mark()  # starts LISTEN; every change after it wakes us
            while True:
                new = await engine.wait_for_change(FOLLOW_WAIT_SECONDS, since=mark)
                if new == mark:
                    continue  # no change within the wait (or LISTEN is down: the timers poll)
                mark = new
                self.store_changed()
                # Read here, not in the exclusive poll worker: a stream of wake-ups must not keep
                # cancelling the read; commits made meanwhile are read by the next wake-up.
                await self.refresh_interventions()
                await asyncio.sleep(WAKE_SPACING_SECONDS)  # bounds the wake-up rate, not a wait
        finally:
            self._following = False  # the timers poll at their own pace again

    def store_changed(self) -> None:
        """Tell the shown screens with a `store_changed` hook that another process committed."""
        self.store_wakes += 1
        for screen in self.screen_stack:
            hook = getattr(screen, "store_changed", None)
            if callable(hook):
                hook()

    def poll_due(self, key: str) -> bool:
        """Whether a timer (keyed by its screen's name) should read the store now: always on
        SQLite or while PostgreSQL's LISTEN is down; else only every `fallback_poll_seconds`."""
        if not self._following or not self.engine.hears_changes():
            return True
        now = time.monotonic()
        if now - self._last_polls.setdefault(key, now) < self.fallback_poll_seconds:
            return False
        self._last_polls[key] = now
        return True

    # ---- runs ----------------------------------------------------------------------------------

    def open_run(self, run_id: str) -> None:
        """Show one run's view on top of the current section, in place of a run view open there.

        So Esc always leads back to the section, however many runs were opened on the way.
        """
        from tui.screens.run_view import RunScreen

        if isinstance(self.screen, RunScreen) and len(self.screen_stack) > 1:
            if self.screen.run_id != run_id:
                self.switch_screen(RunScreen(run_id))
            return
        self.push_screen(RunScreen(run_id))

    def start_engine_task(
        self, run_id: str, *, resume: bool = False, auto_approve: bool | None = None
    ) -> Worker[None]:
        """Drive a stored run (execute or resume) as a worker in this loop; errors notify, and a
        run that stops without completing shows the "run stopped" modal."""
        approve = self.auto_approve if auto_approve is None else auto_approve
        self.decisions.forget_run(run_id)
        self.driven.add(run_id)
        return self.run_worker(
            partial(self._drive, run_id, resume=resume, auto_approve=approve),
            group="engine",
            name=f"run {run_id}",
            exit_on_error=False,
        )

    def engine_busy(self) -> list[str]:
        """Names of the runs this app is driving right now."""
        return [w.name for w in self.workers if w.group == "engine" and not w.is_finished]

    async def _drive(self, run_id: str, *, resume: bool, auto_approve: bool) -> None:
        engine = self.engine
        try:
            if resume:
                run = await engine.resume_run(run_id, auto_approve=auto_approve)
            else:
                run = await engine.execute_run(run_id, auto_approve=auto_approve)
        except OrchestratorError as exc:
            self.notify(str(exc), title=f"run {run_id}", severity="error", timeout=12)
            return
        except Exception as exc:  # noqa: BLE001  (an engine bug must not take the app down)
            self.log.error(f"run {run_id} crashed: {exc!r}")
            self.notify(
                f"{type(exc).__name__}: {exc}; the log file has details; "
                f"`orchestrator resume {run_id}` continues it",
                title=f"run {run_id} stopped unexpectedly",
                severity="error",
                timeout=15,
            )
            return
        if run_id == self.initial_run:
            self.initial_result = run
        # the run's questions may be withdrawn now: close their modal before saying it stopped
        await self.refresh_interventions()
        self.post_message(RunChanged(run_id))
        if run.status is RunStatus.COMPLETED:
            self.notify(f"run {run.id} completed on branch {run.branch}", title="run completed")
        elif run.status is RunStatus.CANCELLED and run.id in self.cancelling:
            self.notify(f"run {run.id} cancelled", severity="warning")
        else:  # stopped, or cancelled by another process: say so with the run's final word
            self.push_screen(RunStoppedModal(run), lambda choice: self._after_stop(run, choice))

    def _after_stop(self, run: Run, choice: str | None) -> None:
        if choice == "resume":
            self.start_engine_task(run.id, resume=True)
            self.notify(f"resuming run {run.id}")
        elif choice == "open":
            self.open_run(run.id)

    def spawn_action(
        self, step: Callable[[OrchestratorApp, str], Coroutine[Any, Any, object]], run_id: str
    ) -> Worker[None]:
        """Run one of tui.actions on a run (they wait on modals, so they need a worker); errors
        notify. The step is called in the worker, so one that never starts leaves no coroutine."""

        async def guarded() -> None:
            try:
                await step(self, run_id)
            except OrchestratorError as exc:
                self.notify(str(exc), severity="error", timeout=12)

        return self.run_worker(guarded, group="actions", exit_on_error=False)

    # ---- interventions -------------------------------------------------------------------------

    def _timed_poll_interventions(self) -> None:
        if self.poll_due("decisions"):
            self.poll_interventions()

    @work(group="intervention-poll", exclusive=True, exit_on_error=False)
    async def poll_interventions(self) -> None:
        """Re-read pending interventions in a worker (a newer poll replaces one still reading)."""
        await self.refresh_interventions()

    async def refresh_interventions(self) -> None:
        """Queue pending interventions not seen yet (any run, any process) and show the next one."""
        await self.decisions.refresh()

    def on_run_changed(self, message: RunChanged) -> None:
        """Tell the screens of the current section that have a `run_changed(run_id)` hook."""
        for screen in self.screen_stack:
            hook = getattr(screen, "run_changed", None)
            if callable(hook):
                hook(message.run_id)

    def on_interventions_changed(self, message: InterventionsChanged) -> None:
        self.poll_interventions()

    def answer(self, item: Intervention) -> None:
        """Show the modal for one intervention now (from a list or a run view), even if seen."""
        self.decisions.answer(item)

    # ---- sections, help, palette ---------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Sections do not switch under a modal (the modal would stay behind in the old section)."""
        return not (action in ("section", "help") and isinstance(self.screen, ModalScreen))

    async def action_section(self, mode: str) -> None:
        """Show a section at its own screen (not the run view last opened over it)."""
        await self.switch_mode(mode)
        while len(self.screen_stack) > 1 and not isinstance(self.screen, ModalScreen):
            await self.pop_screen()

    def action_help(self) -> None:
        self.push_screen(HelpModal(key_help(self, self.screen), where=screen_name(self.screen)))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            # Ours below: "Keys" is the `?` help, "Quit" confirms while runs are driven here.
            if command.title not in ("Keys", "Quit"):
                yield command
        yield SystemCommand("Quit", "Quit the app (ctrl+q)", self.action_quit)
        yield SystemCommand("Runs", "Show the list of runs (1)", lambda: self.switch_mode("runs"))
        yield SystemCommand(
            "Interventions",
            "Pending decisions of every run (2)",
            lambda: self.switch_mode("interventions"),
        )
        yield SystemCommand(
            "New run", "Start a run from a form (3)", lambda: self.switch_mode("new_run")
        )
        yield SystemCommand(
            "Analytics",
            "Runs, cost, findings, waiting and failing checks over time (4)",
            lambda: self.switch_mode("analytics"),
        )
        yield SystemCommand(
            "Lessons",
            "What earlier runs taught; read or forget one (5)",
            lambda: self.switch_mode("lessons"),
        )
        yield SystemCommand("Keys", "Every key binding here (?)", self.action_help)
        run = getattr(screen, "current_run", None) or getattr(screen, "run", None)
        run_id = getattr(screen, "current_run_id", None)
        if isinstance(run, Run):
            yield from self.run_commands(run)
        elif isinstance(run_id, str) and run_id:  # a run known by id only: opening it is safe
            yield SystemCommand(
                f"Open run {run_id}",
                "Its timeline, log and findings",
                partial(self.open_run, run_id),
            )
        extra = getattr(screen, "palette_commands", None)
        if callable(extra):
            yield from extra()

    def run_commands(self, run: Run) -> Iterable[SystemCommand]:
        """The actions that can happen on this run, for the palette."""
        run_id = run.id
        yield SystemCommand(
            f"Open run {run_id}", "Its timeline, log and findings", lambda: self.open_run(run_id)
        )
        offered: list[tuple[str, str, Callable[..., Coroutine[Any, Any, object]]]] = [
            ("Resume", "Continue an interrupted or failed run here (R)", actions.resume),
            ("Cancel", "Stop the run, after a confirm (C)", actions.cancel),
            ("Export", "Write its summary as markdown or JSON to a file (E)", actions.export),
            ("Apply", "Merge its branch into the repository's current branch (A)", actions.apply),
            ("Clean up", "Remove its worktrees and branch; history stays (X)", actions.clean),
        ]
        driving = f"run {run_id}" in self.engine_busy()
        for verb, help_text, step in offered:
            action = step.__name__
            if not actions.applies(action, run) or (action == "resume" and driving):
                continue
            yield SystemCommand(
                f"{verb} run {run_id}",
                help_text,
                partial(self.spawn_action, step, run_id),
            )

    async def action_quit(self) -> None:
        """Quit; when this app is driving runs, confirm first (quitting interrupts them). A run
        that already ended is only writing its summary: the app waits for it, then quits."""
        busy = [name for name in self.engine_busy() if not await self._has_ended(name)]
        if not busy:
            if not self.engine_busy():
                self.exit(self.exit_code_for_initial())
            elif self._quitting is None:
                self._quitting = self.run_worker(self._finish_and_exit, group="quit")
            return
        if isinstance(self.screen, ConfirmModal):
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._quitting = self.run_worker(self._interrupt_and_exit, group="quit")

        self.push_screen(
            ConfirmModal(
                "Quit and interrupt the running runs?",
                f"{', '.join(busy)} "
                + ("stops and is" if len(busy) == 1 else "stop and are")
                + " marked interrupted; resume "
                + ("it" if len(busy) == 1 else "them")
                + " later from the runs list (R) or with `orchestrator resume RUN_ID`.",
                confirm_label="Quit",
            ),
            confirmed,
        )

    async def _has_ended(self, worker_name: str) -> bool:
        """Whether the run an engine worker ("run ID") drives is stored as ended."""
        try:
            run = await self.engine.get_run(worker_name.removeprefix("run "))
        except OrchestratorError:
            return False
        return run.status in FINISHED_RUN_STATUSES

    async def _finish_and_exit(self) -> None:
        """Let the drivers of ended runs finish (summary, log artifact), then quit."""
        await self.workers.wait_for_complete(
            [w for w in self.workers if w.group == "engine" and not w.is_finished]
        )
        self.exit(self.exit_code_for_initial())

    async def _interrupt_and_exit(self) -> None:
        """Cancel the engine workers and wait until their runs are stored as interrupted."""
        engine_workers = [w for w in self.workers if w.group == "engine" and not w.is_finished]
        for worker in engine_workers:
            worker.cancel()
        await self.workers.wait_for_complete(engine_workers)
        for worker in engine_workers:
            run_id = worker.name.removeprefix("run ")
            try:
                run = await self.engine.get_run(run_id)
            except OrchestratorError:
                continue
            if run.status is RunStatus.INTERRUPTED:
                self.interrupted_runs.append(run_id)
        self.exit(self.exit_code_for_initial())

    def exit_notes(self) -> list[str]:
        """What to print once the app has closed: how to resume the runs quitting interrupted."""
        return [
            f"run {run_id} was interrupted; resume it with: orchestrator resume {run_id}"
            for run_id in self.interrupted_runs
        ]

    def exit_code_for_initial(self) -> int:
        """0 unless the run this app was opened to drive ended without completing (then 1)."""
        if self.start_initial is None:
            return 0
        result = self.initial_result
        return 0 if result is not None and result.status is RunStatus.COMPLETED else 1
