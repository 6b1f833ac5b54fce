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
    VerificationCompleted,
)

# Run statuses whose line the final word prints instead of the event stream.
_ENDS = frozenset({"completed", "failed", "cancelled", "interrupted"})


def _first_line(text: str) -> str:
    """The first informative line of an error ("verification failed:" alone says little)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"[:200]
    return lines[0][:200] if lines else ""


def describe(event: Event, names: dict[str, str] | None = None) -> str | None:
    """One human line for a state event, or None for events the console does not show."""
    names = names if names is not None else {}
    match event:
        case RunStatusChanged(status=status, error=error):
            if status in _ENDS:
                return None  # the run's final word (core.final_word) says this, once
            return f"run {event.run_id} {status}" + (f": {error}" if error else "")
        case PlanCreated(phase_ids=ids):
            return f"plan: {len(ids)} phases"
        case PhaseStatusChanged(phase_id=phase_id, plan_id=plan_id, status=status, error=error):
            names[phase_id] = plan_id
            return f"phase {plan_id} {status}" + (
                f": {error.splitlines()[0][:200]}" if error else ""
            )
        case ExecutionStarted(phase_id=phase_id, attempt=attempt):
            return f"  {names.get(phase_id, phase_id)} attempt {attempt} started"
        case ExecutionFinished(phase_id=phase_id, attempt=attempt, status=status, error=error):
            first = _first_line(error) if error else ""
            return f"  {names.get(phase_id, phase_id)} attempt {attempt} {status}" + (
                f": {first}" if first else ""
            )
        case FindingRecorded(severity=severity, category=category, message=message):
            return f"  finding [{severity}] {category}: {message.splitlines()[0][:200]}"
        case VerificationCompleted(phase_id=None, findings=count):
            return f"baseline: {count} finding(s) already at the base commit (not counted)"
        case InterventionRequested(intervention_id=iid, kind=kind, reason=reason):
            raise_it = " --budget-usd N (or --budget-tokens N)" if kind == "budget" else ""
            return (
                f"intervention {iid} ({kind}) waiting: {reason}\n"
                f"  approve: orchestrator approve {iid}{raise_it}   "
                f"reject: orchestrator reject {iid}"
            )
        case InterventionResolved(intervention_id=iid, status=status, note=note):
            return f"intervention {iid} {status}" + (f" ({note})" if note else "")
    return None


async def print_events(sub: Subscription, out: TextIO, *, verbose: bool = False) -> None:
    """Print events until the subscription closes or the task is cancelled."""
    names: dict[str, str] = {}
    try:
        async for event in sub:
            if isinstance(event, LogEmitted):
                if verbose:
                    out.writelines(f"    {record.message}\n" for record in event.lines)
                    out.flush()
                continue
            line = describe(event, names)
            if line:
                out.write(line + "\n")
                out.flush()
    except asyncio.CancelledError:
        pass
