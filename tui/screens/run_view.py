"""One run: its header, token totals, phase timeline, and tabs for the live log, findings and diffs.

The view updates live from two sources: the bus (events of runs this process drives, log lines
included) and the store (runs of other processes, e.g. headless in another terminal or, on a
shared PostgreSQL store, on another machine): a poll, or the app's `store_changed` wake-up. Both only
read; every change goes through the engine commands in tui.actions. A finished run opens the same
way, read-only: its full log, timeline and findings come from the store.
"""

from __future__ import annotations

import functools
import gc
import time
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static, TabbedContent, TabPane
from textual.worker import Worker

from core.bus import Subscription
from core.errors import OrchestratorError
from core.events import LogEmitted
from core.records import (
    ACTIVE_RUN_STATUSES,
    FINISHED_RUN_STATUSES,
    Execution,
    Finding,
    Intervention,
    Phase,
    Run,
    RunStatus,
    Usage,
)
from core.timeutil import parse_ts
from tui import actions
from tui.format import duration_text, holder_words, local_time, status_text
from tui.modals.run_stopped import why
from tui.widgets.diff_view import DiffView
from tui.widgets.findings import SEVERITY_STYLES, FindingsPane, severity_counts
from tui.widgets.keybar import KeyBar
from tui.widgets.log_view import LiveLog, LogPane
from tui.widgets.timeline import PhaseTimeline
from tui.widgets.usage import UsageBar

if TYPE_CHECKING:
    from core.engine import Engine
    from tui.app import OrchestratorApp

_RUN_ACTIONS = frozenset({"resume", "cancel", "apply", "clean", "answer"})
# How often the store is read for changes made by other processes.
POLL_SECONDS = 0.5
# Log lines held in memory by the live log; older ones are read back from the store on scroll-back.
LIVE_LOG_LINES = 1000


# How much of an attempt's error the phase detail shows beside the attempt.
ATTEMPT_ERROR_CHARS = 60


def _first_line(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters (with … when anything was left out)."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class RunScreen(Screen[None]):
    """The run view of one run (live while it runs, read-only once it finished)."""

    SECTION = "Run"
    # The parts above the tabs give way on small terminals so the log always keeps some rows.
    DEFAULT_CSS = """
    RunScreen #run-head { height: auto; max-height: 25%; padding: 0 1; background: $boost; }
    RunScreen #run-usage { height: auto; max-height: 3; }
    RunScreen #run-timeline { height: auto; max-height: 30%; }
    RunScreen #phase-detail { height: auto; max-height: 12%; padding: 0 1; color: $text-muted; }
    RunScreen TabbedContent { height: 1fr; min-height: 6; }
    RunScreen TabPane { padding: 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("t", "focus_timeline", "Timeline"),
        # The tabs say their keys; the footer stays short (it is redrawn on every focus change).
        Binding("l", "show_tab('log')", "Log", show=False),
        Binding("f", "show_tab('findings')", "Findings", show=False),
        Binding("d", "diff", "Diff", show=False),
        Binding("i", "answer", "Answer intervention"),
        Binding("R", "resume", "Resume"),
        Binding("C", "cancel", "Cancel run"),
        Binding("E", "export", "Export"),
        Binding("A", "apply", "Apply"),
        Binding("X", "clean", "Clean up"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: Run | None = None
        self.phases: list[Phase] = []
        self.findings: list[Finding] = []
        self.usage: list[Usage] = []
        self.pending: list[Intervention] = []
        self.executions: list[Execution] = []
        self.refreshes = 0  # completed reads of the run's state, for tests and figures
        self._subscription: Subscription | None = None
        self._dropped = 0
        self._bus_lines_at = 0.0  # when the bus last brought this run's log lines (monotonic)
        self._refresh_wanted = False
        self._refresh_worker: Worker[None] | None = None
        self._pump_worker: Worker[None] | None = None
        self._diff_worker: Worker[None] | None = None
        self._last_state: tuple[object, ...] = ()
        self._allowed: tuple[bool | None, ...] = ()
        self._head_lines = -1
        self._head_text = Text()
        self._detail_text = Text()

    @property
    def orchestrator(self) -> OrchestratorApp:
        return cast("OrchestratorApp", self.app)

    @property
    def engine(self) -> Engine:
        return self.orchestrator.engine

    @property
    def current_run_id(self) -> str:
        """The run the palette's run commands act on."""
        return self.run_id

    # ---- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Subscribe before the log's first page is read: a line is then either in that page or
        # on the bus (lines that arrive while the page loads wait and are fed after it).
        self._subscription = self.engine.subscribe(self.run_id)
        yield Header()
        yield Static(f"run {self.run_id} · loading…", id="run-head")
        yield UsageBar(id="run-usage")
        yield PhaseTimeline(id="run-timeline")
        yield Static(id="phase-detail")
        with TabbedContent(initial="log", id="run-tabs"):
            with TabPane("Log (l)", id="log"):
                fetch = functools.partial(self.engine.log_page, self.run_id)
                yield LogPane(fetch, max_lines=LIVE_LOG_LINES, id="run-log")
            with TabPane("Findings (f)", id="findings"):
                yield FindingsPane(self.engine.attempt_report, id="run-findings")
            with TabPane("Diff (d)", id="diff"):
                yield DiffView(id="run-diff")
        yield KeyBar()

    @property
    def live_log(self) -> LiveLog:
        return self.query_one(LiveLog)

    def on_mount(self) -> None:
        # Everything alive now (the app, the engine, this view's widgets) is exempt from the
        # cyclic garbage collector while the view is open: a full collection over all of it
        # stops the loop for 100+ ms, long enough to feel while a log streams. Unmount hands
        # them back, so nothing freed meanwhile is kept.
        gc.freeze()
        self.sub_title = f"run {self.run_id}"
        assert self._subscription is not None
        # Workers get the function, not a coroutine: one closed before it started leaves no
        # never-awaited coroutine behind.
        pump = functools.partial(self._pump, self._subscription)
        self._pump_worker = self.run_worker(pump, group="run-bus", exit_on_error=False)
        self.set_interval(POLL_SECONDS, self._poll)
        self.request_refresh()
        self.live_log.focus()

    def on_unmount(self) -> None:
        gc.unfreeze()
        if self._subscription is not None:
            self._subscription.close()

    # ---- live updates ----------------------------------------------------------------------------

    async def _pump(self, subscription: Subscription) -> None:
        """Bus events of this run: log batches go straight to the log, state events refresh."""
        async for event in subscription:
            if isinstance(event, LogEmitted):
                if subscription.dropped_log_lines != self._dropped:
                    # The bus dropped batches while we were behind: read them from the store.
                    self._dropped = subscription.dropped_log_lines
                    await self.live_log.catch_up()
                self.live_log.feed(event.lines)
                self._bus_lines_at = time.monotonic()
            else:
                self.request_refresh()

    async def _poll(self) -> None:
        """Changes made by other processes: new log lines and, while the run is active, its state
        (its clock too). With PostgreSQL's notifications up, the log and a finished run's state
        are read on `store_changed` instead, and here only as a fallback now and then."""
        if not self.orchestrator.poll_due(type(self).__name__):
            if self.run is not None and self.run.status in ACTIVE_RUN_STATUSES:
                self.request_refresh()  # the durations shown move on
            return
        await self._read_changes()

    def store_changed(self) -> None:
        """Another process committed to the shared store: read this run's news in this screen's
        own queue (after a poll under way, never alongside it)."""
        self.call_later(self._read_changes)

    async def _read_changes(self) -> None:
        """New log lines (unless the bus brings them) and the run's state when it changed."""
        if not self.is_mounted:
            return
        try:
            if time.monotonic() - self._bus_lines_at > 2 * POLL_SECONDS:
                # Quiet bus: the run is in another process (or idle); read new lines from the store.
                await self.live_log.catch_up()
            if self.run is None or self.run.status in ACTIVE_RUN_STATUSES:
                self.request_refresh()
            else:
                run = await self.engine.get_run(self.run_id)
                if run.status != self.run.status or run.updated_at != self.run.updated_at:
                    self.request_refresh()
        except OrchestratorError as exc:
            self.notify(str(exc), title=f"run {self.run_id}", severity="error")

    def run_changed(self, run_id: str) -> None:
        """Hook the app calls when it learns a run changed (bus bridge)."""
        if run_id == self.run_id:
            self.request_refresh()

    def request_refresh(self) -> None:
        """Read the run's state again soon; requests made while a read runs coalesce into one."""
        self._refresh_wanted = True
        worker = self._refresh_worker
        if worker is None or worker.is_finished or worker.is_cancelled:
            self._refresh_worker = self.run_worker(
                self._refresh_loop, group="run-refresh", exit_on_error=False
            )

    async def _refresh_loop(self) -> None:
        while self._refresh_wanted:
            self._refresh_wanted = False
            await self._refresh()

    async def _refresh(self) -> None:
        engine = self.engine
        try:
            run = await engine.get_run(self.run_id)
            phases = await engine.phases(self.run_id)
            findings = await engine.findings(self.run_id)
            usage = await engine.usage_rows(self.run_id)
            pending = await engine.interventions(self.run_id, pending_only=True)
            executions = await engine.executions(self.run_id)
        except OrchestratorError as exc:
            self.query_one("#run-head", Static).update(
                Text(f"run {self.run_id}: {exc}", style="bold red")
            )
            return
        if not self.is_mounted:
            return
        now = self.orchestrator.now()
        active = run.status in ACTIVE_RUN_STATUSES
        state = (
            run,
            phases,
            findings,
            usage,
            pending,
            executions,
            now.replace(microsecond=0) if active else None,
        )
        if state == self._last_state:
            self.refreshes += 1
            return  # nothing changed: leave the widgets (and the user's place in them) alone
        self._last_state = state
        usage_changed = usage != self.usage
        before = self.run
        self.run, self.phases, self.findings = run, phases, findings
        self.usage, self.pending, self.executions = usage, pending, executions
        # Each widget is touched only when what it shows changed: an active run refreshes every
        # poll, and needless updates cost layout passes while the log is busy.
        self.live_log.set_phase_labels({p.id: p.plan_id for p in phases})
        head = self._head()
        if head != self._head_text:
            lines = head.plain.count("\n")
            self.query_one("#run-head", Static).update(head, layout=lines != self._head_lines)
            self._head_text, self._head_lines = head, lines
        if usage_changed or not self.refreshes:
            self.query_one(UsageBar).show_usage(usage)
        timeline = self.query_one(PhaseTimeline)
        timeline.show_phases(phases, now)
        self.query_one(FindingsPane).show_findings(findings, phases)
        counts = severity_counts(findings)
        label = f"Findings ({sum(counts.values())} open) (f)" if counts else "Findings (f)"
        tab = self.query_one(TabbedContent).get_tab("findings")
        if str(tab.label) != label:
            tab.label = label
        self._phase_detail(timeline.selected_phase)
        allowed = tuple(self.check_action(a, ()) for a in sorted(_RUN_ACTIONS))
        if allowed != self._allowed:  # the footer redraws its keys only when they change
            self._allowed = allowed
            self.refresh_bindings()
        if before is not None and before.status in ACTIVE_RUN_STATUSES:
            self._say_stopped(run)
        self.refreshes += 1

    def _say_stopped(self, run: Run) -> None:
        """Say once that a run this app only watches stopped (one it drives gets its own notice)."""
        if run.status in ACTIVE_RUN_STATUSES or run.id in self.orchestrator.driven:
            return
        if run.status is RunStatus.COMPLETED:
            self.notify(f"run {run.id} completed", title="run completed")
            return
        resume = "; R resumes it here" if actions.applies("resume", run) else ""
        self.notify(f"{why(run)}{resume}", title=f"run {run.id} {run.status}", severity="warning")

    def _head(self) -> Text:
        run = self.run
        assert run is not None
        head = Text()
        head.append(f"run {run.id}  ", style="bold")
        head.append_text(status_text(str(run.status)))
        if run.status in FINISHED_RUN_STATUSES:
            head.append("  (finished: read-only)", style="dim")
        head.append(f"  {run.task}")
        # What needs the user comes first: it must survive a small terminal cutting the header.
        # An interrupted run no longer waits, but its asks can still be answered before resume.
        waiting = "waiting for you" if run.status in ACTIVE_RUN_STATUSES else "still asks you"
        then = "" if run.status in ACTIVE_RUN_STATUSES else " before resuming"
        for item in self.pending:
            phase = next((p.plan_id for p in self.phases if p.id == item.phase_id), "run")
            head.append(
                f"\n⚠ {waiting} ({phase}): {item.reason} — press i to answer{then}",
                "bold yellow",
            )
        if run.error:
            head.append(f"\n{why(run)}", style="red")  # never the bare status again
        if run.status in (RunStatus.FAILED, RunStatus.INTERRUPTED) and not self._driving():
            head.append("  R resumes it here", style="dim")
        head.append(f"\n{run.repo}", style="dim")
        if run.branch:
            head.append(f"  branch {run.branch}", style="dim")
        holder = holder_words(run)
        if holder:
            head.append(f"  {holder}", style="dim")
        head.append(f"  started {local_time(run.started_at or run.created_at)}", style="dim")
        if run.started_at:
            end = parse_ts(run.completed_at) if run.completed_at else self.orchestrator.now()
            if run.completed_at or run.status in ACTIVE_RUN_STATUSES:
                head.append(f"  took {duration_text(parse_ts(run.started_at), end)}", style="dim")
        done = sum(1 for p in self.phases if str(p.status) == "completed")
        head.append(f"  phases {done}/{len(self.phases)}", style="dim")
        counts = severity_counts(self.findings)
        if counts:
            head.append("\nopen findings: ")
            for severity, n in counts.items():
                head.append(f"{n} {severity}  ", style=SEVERITY_STYLES.get(severity, ""))
        return head

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Run actions show (and work) only where they apply to the run's status."""
        run = self.run
        if run is None or action not in _RUN_ACTIONS:
            return True
        if action == "answer":
            return bool(self.pending)
        return actions.applies(action, run) and not (action == "resume" and self._driving())

    def _driving(self) -> bool:
        return f"run {self.run_id}" in self.orchestrator.engine_busy()

    # ---- timeline selection and diff -----------------------------------------------------------

    @on(DataTable.RowHighlighted, "#run-timeline")
    def _phase_highlighted(self, event: DataTable.RowHighlighted) -> None:
        phase = self.query_one(PhaseTimeline).selected_phase
        self._phase_detail(phase)
        if phase is not None and self.query_one(TabbedContent).active == "diff":
            self._load_diff(phase)

    @on(DataTable.RowSelected, "#run-timeline")
    def _phase_selected(self, event: DataTable.RowSelected) -> None:
        self.action_diff()

    def _phase_detail(self, phase: Phase | None) -> None:
        text = Text()
        if phase is not None:
            attempts = [e for e in self.executions if e.phase_id == phase.id]
            self._describe_phase(phase, attempts, self.orchestrator.now(), text)
        if text != self._detail_text:
            self._detail_text = text
            self.query_one("#phase-detail", Static).update(text)

    @staticmethod
    def _describe_phase(phase: Phase, attempts: list[Execution], now: datetime, text: Text) -> None:
        # Attempts first, each error cut to its first line: the last attempt must stay in view
        # however long an earlier attempt's error is (the findings tab holds the whole output).
        text.append(f"{phase.plan_id} {phase.name}", style="bold")
        if attempts:
            text.append("  attempts:", style="dim")
            for e in attempts:
                end = parse_ts(e.completed_at) if e.completed_at else now
                took = duration_text(parse_ts(e.started_at), end)
                text.append(f"  #{e.attempt} ")
                text.append_text(status_text(str(e.status)))
                text.append(f" {took}", style="dim")
                if e.error:
                    text.append(f" ({_first_line(e.error, ATTEMPT_ERROR_CHARS)})", style="dim")
        if phase.error:
            text.append(f"\n{phase.error}", style="red")
        text.append(f"\n{phase.description or phase.name}")
        if phase.dependencies:  # whole here: the timeline may show them shortened
            text.append(f"  depends on {', '.join(phase.dependencies)}", style="dim")
        text.append(f"  complexity {phase.estimated_complexity}", style="dim")
        if phase.verification_criteria:
            text.append(f"  checks: {'; '.join(phase.verification_criteria)}", style="dim")

    def action_diff(self) -> None:
        phase = self.query_one(PhaseTimeline).selected_phase
        self.query_one(TabbedContent).active = "diff"
        if phase is not None:
            self._load_diff(phase)

    def _load_diff(self, phase: Phase) -> None:
        view = self.query_one(DiffView)
        title = f"{phase.plan_id} {phase.name}"
        if not phase.commit:
            view.show_message(title, f"{phase.plan_id} is {phase.status}: it has no commit yet.")
            return
        if view.phase_id == phase.id and view.diff:
            return
        view.show_message(f"{title} · commit {phase.commit[:10]}", "reading the commit…")
        read = functools.partial(self._read_diff, phase)
        self._diff_worker = self.run_worker(read, group="diff", exclusive=True, exit_on_error=False)

    async def _read_diff(self, phase: Phase) -> None:
        view = self.query_one(DiffView)
        title = f"{phase.plan_id} {phase.name} · commit {phase.commit[:10] if phase.commit else ''}"
        try:
            diff = await self.engine.phase_diff(self.run_id, phase.id)
        except OrchestratorError as exc:
            view.show_message(title, str(exc))
            return
        view.show_diff(phase.id, title, diff)

    # ---- keys ----------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_focus_timeline(self) -> None:
        self.query_one(PhaseTimeline).focus()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        if tab == "log":
            self.live_log.focus()
        elif tab == "findings":
            self.query_one(FindingsPane).findings_tree.focus()

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "diff":
            phase = self.query_one(PhaseTimeline).selected_phase
            if phase is not None:
                self._load_diff(phase)

    def action_answer(self) -> None:
        if not self.pending:
            self.notify(f"run {self.run_id} has no pending intervention")
            return
        self.orchestrator.answer(self.pending[0])

    def action_resume(self) -> None:
        self.orchestrator.spawn_action(actions.resume, self.run_id)

    def action_cancel(self) -> None:
        self.orchestrator.spawn_action(actions.cancel, self.run_id)

    def action_export(self) -> None:
        self.orchestrator.spawn_action(actions.export, self.run_id)

    def action_apply(self) -> None:
        self.orchestrator.spawn_action(actions.apply, self.run_id)

    def action_clean(self) -> None:
        self.orchestrator.spawn_action(actions.clean, self.run_id)
