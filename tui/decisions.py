"""The queue of pending interventions the app asks about: one modal at a time, in arrival order.

Pending interventions come from the store (every run, every process) each time the app polls or
its bus says one was requested or answered. One not shown yet is queued; the next in the queue
is shown as a modal over whatever screen is on top. Esc sets it aside (it stays pending and is
listed in section 2); resuming its run, or choosing it in the list, shows it again.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.worker import Worker

from core.errors import AlreadyAnsweredError, OrchestratorError, WithdrawnError
from core.records import Intervention
from tui.modals.intervention import Decision, InterventionModal

if TYPE_CHECKING:
    from tui.app import OrchestratorApp


class DecisionQueue:
    """The app's pending questions and the modal showing one of them."""

    def __init__(self, app: OrchestratorApp) -> None:
        self.app = app
        self.queue: deque[Intervention] = deque()
        self.seen: dict[str, str] = {}  # id -> run id, shown (or set aside with Esc) already
        self.showing: InterventionModal | None = None
        self._opening = False  # a worker is reading what the next modal shows

    async def refresh(self) -> None:
        """Queue pending interventions not seen yet and show the next one."""
        app = self.app
        try:
            pending = await app.engine.interventions(pending_only=True)
        except OrchestratorError as exc:
            app.notify(str(exc), title="interventions", severity="error")
            return
        ids = {i.id for i in pending}
        if self.showing is not None and self.showing.item.id not in ids:
            answered = self.showing.item
            self.showing.withdraw()
            self.showing = None
            try:
                now = await app.engine.intervention(answered.id)
            except OrchestratorError:
                now = answered
            if str(now.status) == "withdrawn":
                app.notify(f"intervention {answered.id} was withdrawn: its run ended")
            else:
                app.notify(f"intervention {answered.id} was answered elsewhere")
        queued = {i.id for i in self.queue}
        for item in pending:
            if item.id not in self.seen and item.id not in queued:
                self.queue.append(item)
        self.queue = deque(i for i in self.queue if i.id in ids)
        self.show_next()

    def forget_run(self, run_id: str) -> None:
        """Set-aside questions of this run come back (it is about to wait on them again)."""
        self.seen = {i: r for i, r in self.seen.items() if r != run_id}

    def answer(self, item: Intervention) -> None:
        """Show the modal for one intervention next, even if it was set aside."""
        self.seen.pop(item.id, None)
        self.queue = deque(i for i in self.queue if i.id != item.id)
        self.queue.appendleft(item)
        self.show_next()

    def show_next(self) -> Worker[None]:
        """Show the next queued intervention in its own worker (polls must not cancel it)."""
        return self.app.run_worker(self._show_next, group="intervention-show")

    async def _show_next(self) -> None:
        if self.showing is not None or self._opening or not self.queue:
            return
        self._opening = True
        try:
            item = self.queue[0]
            task, phase = "", None
            try:
                task = (await self.app.engine.get_run(item.run_id)).task
                if item.phase_id is not None:
                    phases = await self.app.engine.phases(item.run_id)
                    phase = next((p for p in phases if p.id == item.phase_id), None)
            except OrchestratorError:
                pass  # the modal still shows the intervention's own reason and actions
            if not self.queue or self.queue[0].id != item.id:
                return  # answered or reordered while we read; the next poll shows what is due
            self.queue.popleft()
            self.seen[item.id] = item.run_id
            modal = InterventionModal(
                item,
                task=task,
                phase=phase,
                waiting=len(self.queue),
            )
            self.showing = modal
            self.app.push_screen(modal, lambda decision: self._decided(modal, decision))
        finally:
            self._opening = False

    def _decided(self, modal: InterventionModal, decision: Decision | None) -> None:
        if self.showing is modal:  # a withdrawn modal's late callback must not clear the next one
            self.showing = None
        if decision is not None:
            self._resolve_later(decision)
        else:
            self.show_next()

    def _resolve_later(self, decision: Decision) -> Worker[None]:
        return self.app.run_worker(partial(self._resolve, decision), group="interventions")

    async def _resolve(self, decision: Decision) -> None:
        app = self.app
        extra: dict[str, Any] = {}
        if decision.budget_usd is not None:
            extra["budget_usd"] = decision.budget_usd
        if decision.budget_tokens is not None:
            extra["budget_tokens"] = decision.budget_tokens
        try:
            item = await app.engine.resolve_intervention(
                decision.intervention_id, approve=decision.approve, note=decision.note, **extra
            )
        except WithdrawnError as exc:
            app.notify(str(exc), severity="warning")
        except AlreadyAnsweredError as exc:
            app.notify(f"already answered: {exc}", severity="warning")
        except OrchestratorError as exc:
            app.notify(str(exc), title="intervention", severity="error", timeout=12)
        else:
            by = f" by {item.answered_by}" if item.answered_by else ""
            app.notify(f"intervention {item.id} {item.status}{by}")
        app.poll_interventions()
