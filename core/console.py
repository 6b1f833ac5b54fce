"""The headless console sink: prints a run's state events (and, when verbose, its log) to a stream."""

from __future__ import annotations

import asyncio
from typing import TextIO

from core.bus import Subscription
from core.events import (
    Event,
    ExecutionFinished,
    ExecutionStarted,
    FindingRecorded,
    InterventionRequested,
    InterventionResolved,
    LogEmitted,
    PhaseStatusChanged,
    PlanCreated,
    RunStatusChanged,
)


def describe(event: Event) -> str | None:
    """One human line for a state event, or None for events the console does not show."""
    match event:
        case RunStatusChanged(status=status, error=error):
            return f"run {event.run_id} {status}" + (f": {error}" if error else "")
        case PlanCreated(phase_ids=ids):
            return f"plan: {len(ids)} phases"
        case PhaseStatusChanged(plan_id=plan_id, status=status, error=error):
            return f"phase {plan_id} {status}" + (f": {error.splitlines()[0][:200]}" if error else "")
        case ExecutionStarted(attempt=attempt):
            return f"  attempt {attempt} started"
        case ExecutionFinished(attempt=attempt, status=status, error=error):
            first = error.splitlines()[0][:200] if error else ""
            return f"  attempt {attempt} {status}" + (f": {first}" if first else "")
        case FindingRecorded(severity=severity, category=category, message=message):
            return f"  finding [{severity}] {category}: {message.splitlines()[0][:200]}"
        case InterventionRequested(intervention_id=iid, kind=kind, reason=reason):
            return (
                f"intervention {iid} ({kind}) waiting: {reason}\n"
                f"  approve: orchestrator approve {iid}   reject: orchestrator reject {iid}"
            )
        case InterventionResolved(intervention_id=iid, status=status, note=note):
            return f"intervention {iid} {status}" + (f" ({note})" if note else "")
    return None


async def print_events(sub: Subscription, out: TextIO, *, verbose: bool = False) -> None:
    """Print events until the subscription closes or the task is cancelled."""
    try:
        async for event in sub:
            if isinstance(event, LogEmitted):
                if verbose:
                    for record in event.lines:
                        out.write(f"    {record.message}\n")
                    out.flush()
                continue
            line = describe(event)
            if line:
                out.write(line + "\n")
                out.flush()
    except asyncio.CancelledError:
        pass
