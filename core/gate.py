"""Manual interventions: ask a person (or `--yes`) through an intervention row and wait for the answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.actors import AUTO_APPROVER
from core.errors import NeedsInputError, RunCancelled
from core.events import InterventionRequested, InterventionResolved
from core.lifecycle import Lifecycle
from core.records import (
    AUTO_APPROVABLE_KINDS,
    AUTO_APPROVED_NOTE,
    Intervention,
    InterventionKind,
    InterventionStatus,
)
from core.state.store import StateStore


class Gate:
    """Creates intervention rows once per decision point and waits until they are answered."""

    def __init__(
        self,
        store: StateStore,
        lifecycle: Lifecycle,
        run_id: str,
        *,
        auto_approve: bool,
        poll_seconds: float,
        on_waiting: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._journal = lifecycle.journal
        self._run_id = run_id
        self._auto = auto_approve
        self._poll = poll_seconds
        self._on_waiting = on_waiting
        self._waiters = 0

    async def decide(
        self,
        kind: InterventionKind,
        *,
        phase_id: str | None,
        key: str,
        reason: str,
        action_required: str,
        payload: dict[str, Any] | None = None,
    ) -> Intervention:
        """The answered intervention for this decision point (kind, phase, key), asking if needed."""
        item = await self._find(kind, phase_id, key)
        if item is None:
            item = await self._store.create_intervention(
                self._run_id,
                phase_id,
                kind,
                reason,
                action_required,
                payload={**(payload or {}), "key": key},
            )
            await self._journal.emit(
                InterventionRequested(
                    run_id=self._run_id,
                    intervention_id=item.id,
                    phase_id=phase_id,
                    kind=str(kind),
                    reason=reason,
                )
            )
            self._journal.log(
                self._run_id,
                phase_id,
                "warning",
                f"intervention {item.id} ({kind}) pending: {reason} "
                f"[approve: orchestrator approve {item.id} | reject: orchestrator reject {item.id}]",
            )
        if item.status is not InterventionStatus.PENDING:
            return item
        if self._auto:
            if kind in AUTO_APPROVABLE_KINDS:
                return await self._answer(item.id, True, AUTO_APPROVED_NOTE)
            raise NeedsInputError(
                f"intervention {item.id} ({kind}) needs your input, which --yes cannot give: "
                f"{reason}. Answer it with `orchestrator approve {item.id}` or "
                f"`orchestrator reject {item.id}`, then `orchestrator resume {self._run_id}`."
            )
        return await self._wait(item)

    async def _find(
        self, kind: InterventionKind, phase_id: str | None, key: str
    ) -> Intervention | None:
        """The question already asked at this decision point; a withdrawn one is asked anew."""
        for item in await self._store.list_interventions(run_id=self._run_id):
            if (
                item.kind == kind
                and item.phase_id == phase_id
                and item.payload.get("key") == key
                and item.status is not InterventionStatus.WITHDRAWN
            ):
                return item
        return None

    async def _answer(self, intervention_id: str, approve: bool, note: str) -> Intervention:
        status = InterventionStatus.APPROVED if approve else InterventionStatus.REJECTED
        return await self._lifecycle.intervention_to(
            intervention_id, status, note=note, answered_by=AUTO_APPROVER
        )

    async def _wait(self, item: Intervention) -> Intervention:
        """Poll the row until another process (or the TUI) answers it; cancellation is honoured."""
        self._waiters += 1
        if self._waiters == 1:
            await self._on_waiting(True)
        try:
            mark = await self._store.change_mark(self._run_id)  # LISTEN on PostgreSQL
            while True:
                current = await self._store.get_intervention(item.id)
                if current.status is not InterventionStatus.PENDING:
                    # the answer (and its log line) was stored by whoever gave it, maybe
                    # another process: announce it on this process's bus too
                    await self._journal.emit(
                        InterventionResolved(
                            run_id=self._run_id,
                            intervention_id=current.id,
                            status=str(current.status),
                            note=current.note,
                        )
                    )
                    break
                if await self._store.cancel_requested(self._run_id):
                    raise RunCancelled()
                mark = await self._store.wait_for_change(self._poll, self._run_id, mark)
        finally:
            self._waiters -= 1
        # leaving by an exception, the run's end (not a return to work) is its next status
        if self._waiters == 0:
            await self._on_waiting(False)
        return current
