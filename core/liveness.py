"""Whether the process holding a run's lease still lives, and the SQL that presents a run whose
driving process is gone as `interrupted` in every read (so filters and counts agree).

A lease owner is "host:pid@start:..." (process_owner(); `start` is the process's start time from
/proc/<pid>/stat, absent where there is no /proc and in owners older versions wrote). On this host
liveness follows the process: the same pid with the same start time alive means the run goes on
even when its heartbeat is late (its lease expired), a dead pid or a pid now held by another
process means it is lost at once. On another host (and for an owner without a start time whose
pid lives) the lease must expire first. A run nobody ever took a lease for (stored, never
started) is not lost. Reads only compute this; the next writing command records it through
core.lifecycle.
"""

from __future__ import annotations

import enum
import os
import socket
from functools import cache
from pathlib import Path

ACTIVE = "('planning', 'executing', 'waiting')"

# The SQL functions core.state.db registers on every SQLite connection (PostgreSQL gets both
# from core.state.dialect.PG_FUNCTIONS as false: its server cannot see the clients' processes).
OWNER_GONE = "owner_gone"
OWNER_LIVES = "owner_lives"

# True for a runs row (unqualified columns) whose lease another process may take: nobody holds
# it, or it expired and its owner does not live on this host. Needs the parameter :now.
LEASE_FREE = (
    "(lease_owner IS NULL OR ((lease_expires_at IS NULL OR lease_expires_at < :now)"
    " AND NOT owner_lives(lease_owner)))"
)

# True for a runs row (unqualified columns) whose driving process is gone; needs the parameter
# :now (utcnow) and the SQL functions owner_gone and owner_lives.
LOST_RUN = f"(status IN {ACTIVE} AND lease_owner IS NOT NULL AND (owner_gone(lease_owner) OR {LEASE_FREE}))"

# The columns a read adds to `runs.*`: the status, error and end time a person should see.
SEEN_RUN_COLUMNS = (
    f"CASE WHEN {LOST_RUN} THEN 'interrupted' ELSE status END AS seen_status,"
    f" CASE WHEN {LOST_RUN} THEN 'interrupted: the process driving it ('"
    " || COALESCE(lease_owner, 'unknown') || ') is gone; `orchestrator resume ' || id"
    " || '` continues it' ELSE error END AS seen_error,"
    f" CASE WHEN {LOST_RUN} THEN MIN(COALESCE(lease_expires_at, updated_at, :now), :now)"
    " ELSE completed_at END AS seen_completed_at"
)

# True inside a subquery over `runs` correlated to a phase or execution row's run_id.
LOST_RUN_OF = "EXISTS (SELECT 1 FROM runs WHERE runs.id = {alias}.run_id AND " + LOST_RUN + ")"


# The run metadata key naming the lease owner of the last worker that claimed the run (its lease
# is cleared when the run ends; this stays, so a finished run still says which worker drove it).
LAST_WORKER = "last_worker"


def last_worker_owner(metadata: dict[str, object]) -> str | None:
    """The lease owner "host:pid@start:worker:NAME" of the last worker that claimed a run, if any."""
    owner = metadata.get(LAST_WORKER)
    return owner if isinstance(owner, str) and worker_name(owner) else None


def worker_name(owner: str | None) -> str | None:
    """The worker's id in a lease owner "host:pid@start:worker:NAME" (core.worker), else None."""
    parts = (owner or "").split(":", 3)
    return parts[3] if len(parts) == 4 and parts[2] == "worker" and parts[3] else None


class OwnerState(enum.Enum):
    """What this host can tell about a lease owner's process."""

    ALIVE = "alive"  # this host, the same pid and start time: the very process that took it
    GONE = "gone"  # this host, the pid is dead or now another process's
    UNKNOWN = "unknown"  # another host, or an owner without a start time whose pid lives


_PROC = Path("/proc")


def process_start(pid: int) -> str | None:
    """Process `pid`'s start time (field 22 of /proc/<pid>/stat, clock ticks after boot), None
    where /proc cannot tell (no /proc here, or no such process); a zombie has none either."""
    try:
        stat = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ")": split after it
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


@cache
def _owner_of(pid: int) -> str:
    start = process_start(pid)
    return f"{socket.gethostname()}:{pid}" + (f"@{start}" if start else "")


def process_owner() -> str:
    """This process's part of a lease owner: "host:pid@start" ("host:pid" without /proc)."""
    return _owner_of(os.getpid())


def owner_pid(owner: str) -> int | None:
    """The pid in a lease owner "host:pid[@start]:...", None when it names none."""
    pid_text = owner.partition(":")[2].split(":", 1)[0].partition("@")[0]
    return int(pid_text) if pid_text.isdigit() else None


def owner_state(owner: str) -> OwnerState:
    """Whether a lease owner's process lives, is gone, or cannot be seen from this host."""
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.split(":", 1)[0].partition("@")
    if host != socket.gethostname() or not pid_text.isdigit():
        return OwnerState.UNKNOWN
    pid = int(pid_text)
    if start and f"{host}:{pid_text}@{start}" == process_owner():
        return OwnerState.ALIVE  # this very process: no system call needed
    if start and _PROC.is_dir():
        return OwnerState.ALIVE if process_start(pid) == start else OwnerState.GONE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return OwnerState.GONE
    except PermissionError:
        return OwnerState.UNKNOWN
    return OwnerState.UNKNOWN


def owner_alive(owner: str) -> bool:
    """Whether a lease owner "host:pid@start:..." may still run (not known to be gone)."""
    return owner_state(owner) is not OwnerState.GONE


def owner_gone(owner: str | None) -> int:
    """The SQL function owner_gone: 1 when a lease owner is known dead (gone from this host)."""
    return int(bool(owner) and owner_state(str(owner)) is OwnerState.GONE)


def owner_lives(owner: str | None) -> int:
    """The SQL function owner_lives: 1 when a lease owner is this host's very process, alive."""
    return int(bool(owner) and owner_state(str(owner)) is OwnerState.ALIVE)


def lease_held(owner: str | None, expires_at: str | None, now: str) -> bool:
    """Whether a process holds a lease (LEASE_FREE's negation, in Python; times are ISO-8601 UTC
    as core.timeutil.utcnow writes them): its owner lives here, or it has not expired and its
    owner is not known to be gone."""
    if not owner:
        return False
    state = owner_state(owner)
    if state is not OwnerState.UNKNOWN:
        return state is OwnerState.ALIVE
    return expires_at is not None and expires_at > now


def lease_overdue(owner: str | None, expires_at: str | None, now: str) -> bool:
    """Whether a lease expired while its owner's process still lives here (a late heartbeat)."""
    return bool(owner and expires_at and expires_at < now and owner_lives(owner))
