"""How times, durations and statuses look on screen; shared by every screen and widget."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from core.liveness import last_worker_owner, lease_overdue, worker_name
from core.records import ACTIVE_RUN_STATUSES, FINISHED_RUN_STATUSES, Intervention, Run
from core.timeutil import parse_ts, utcnow

STATUS_STYLES = {
    "pending": "dim",
    "planning": "cyan",
    "executing": "bold cyan",
    "in_progress": "bold cyan",
    "running": "bold cyan",
    "waiting": "bold magenta",
    "completed": "green",
    "succeeded": "green",
    "approved": "green",
    "failed": "bold red",
    "rejected": "red",
    "withdrawn": "dim",
    "interrupted": "yellow",
    "cancelled": "dim",
    "skipped": "dim",
}


def status_text(status: str) -> Text:
    """A status word in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def local_time(stamp: str | None) -> str:
    """A stored UTC timestamp as local "YYYY-MM-DD HH:MM"."""
    if not stamp:
        return "—"
    return parse_ts(stamp).astimezone().strftime("%Y-%m-%d %H:%M")


def duration_text(start: datetime, end: datetime) -> str:
    """A short human duration: 42s, 3m 05s, 2h 14m, 3d 4h."""
    seconds = max(0, int((end - start).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def answer_note(item: Intervention) -> str:
    """Who answered an intervention and the note they gave, for the Note column."""
    by = f"by {item.answered_by}" if item.answered_by else ""
    return " · ".join(part for part in (by, item.note or "") if part)


def holder_cell(run: Run, width: int) -> Text:
    """The runs table's worker cell: the worker holding the run's lease, "queued" while a
    submitted run waits for one, dimmed the last worker that drove it once none holds it, and
    empty for a run only this machine drove."""
    worker = worker_name(run.lease_owner)
    if worker:
        style = "" if run.status in ACTIVE_RUN_STATUSES else "dim"
    elif run.queued and run.status not in FINISHED_RUN_STATUSES:
        return Text("queued", style="dim")
    else:
        worker, style = worker_name(last_worker_owner(run.metadata)), "dim"
    if not worker:
        return Text("")
    return Text(worker if len(worker) <= width else worker[: width - 1] + "…", style=style)


def holder_words(run: Run) -> str | None:
    """Which worker drives a run and until when its lease holds (or which one drove it last),
    for the run view's header; None for a run no worker ever held and none is to take."""
    owner = run.lease_owner
    worker = worker_name(owner)
    if worker and owner:
        host = owner.split(":", 1)[0]
        if run.lost:
            return f"worker {worker} on {host} (gone: its lease ran out)"
        if lease_overdue(owner, run.lease_expires_at, utcnow()):
            return (
                f"worker {worker} on {host}, lease overdue since"
                f" {local_time(run.lease_expires_at)} (its process lives; its heartbeat is late)"
            )
        return f"worker {worker} on {host}, lease until {local_time(run.lease_expires_at)}"
    if run.queued and run.status not in FINISHED_RUN_STATUSES:
        return "queued for a worker (none holds it yet)"
    last = last_worker_owner(run.metadata)
    if last:
        return f"driven by worker {worker_name(last)} on {last.split(':', 1)[0]}"
    return None
