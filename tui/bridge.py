"""Bus → Textual messages: one worker reads every engine event of this process and tells the app.

Log batches are not forwarded here (the run view reads log lines itself); state events become
`RunChanged` (coalesced per run while queued) and `InterventionsChanged`. Runs of other processes
publish nothing on this bus, so the screens also poll the store; see `OrchestratorApp`.
"""

from __future__ import annotations

from textual.message import Message
from textual.message_pump import MessagePump

from core.bus import Subscription
from core.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
    LogEmitted,
)


class RunChanged(Message):
    """Something about a run changed in this process (status, phase, finding, usage)."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunChanged) and message.run_id == self.run_id


class InterventionsChanged(Message):
    """An intervention was requested or answered in this process."""

    def __init__(self, run_id: str, intervention_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.intervention_id = intervention_id


def to_message(event: Event) -> Message | None:
    """The app message for one bus event, or None for log batches."""
    if isinstance(event, LogEmitted):
        return None
    if isinstance(event, InterventionRequested | InterventionResolved):
        return InterventionsChanged(event.run_id, event.intervention_id)
    return RunChanged(event.run_id)


async def pump(subscription: Subscription, target: MessagePump) -> None:
    """Forward events until the subscription or the bus closes; run it as a worker."""
    async for event in subscription:
        message = to_message(event)
        if message is not None:
            target.post_message(message)
            if isinstance(message, InterventionsChanged):
                target.post_message(RunChanged(message.run_id))
