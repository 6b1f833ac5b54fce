"""Whether the process holding a run's lease still lives, and the SQL that presents a run whose
driving process is gone as `interrupted` in every read (so filters and counts agree).

A lease owner is "host:pid:..." (core.driver.LEASE_OWNER). On this host a dead pid means the
run is lost at once; on another host the lease must expire first. A run nobody ever took a
lease for (stored, never started) is not lost. Reads only compute this; the next writing
command records it through core.lifecycle.
"""

from __future__ import annotations

import os
import socket

ACTIVE = "('planning', 'executing', 'waiting')"

# True for a runs row (unqualified columns) whose driving process is gone; needs the parameter
# :now (utcnow) and the SQL function owner_gone (OWNER_GONE, registered on every connection).
LOST_RUN = (
    f"(status IN {ACTIVE} AND lease_owner IS NOT NULL AND (lease_expires_at IS NULL"
    " OR lease_expires_at < :now OR owner_gone(lease_owner)))"
)
OWNER_GONE = "owner_gone"

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
    """The lease owner "host:pid:worker:NAME" of the last worker that claimed a run, if any."""
    owner = metadata.get(LAST_WORKER)
    return owner if isinstance(owner, str) and worker_name(owner) else None


def worker_name(owner: str | None) -> str | None:
    """The worker's id in a lease owner "host:pid:worker:NAME" (core.worker), else None."""
    parts = (owner or "").split(":", 3)
    return parts[3] if len(parts) == 4 and parts[2] == "worker" and parts[3] else None


def owner_alive(owner: str) -> bool:
    """Whether a lease owner "host:pid:..." may still run; a dead pid on this host means no."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(owner: str | None) -> int:
    """The SQL function owner_gone: 1 when a lease owner is known dead (a dead pid here)."""
    return int(bool(owner) and not owner_alive(str(owner)))
