"""Whether the home can be written: read commands then open it read-only, writing ones refuse."""

from __future__ import annotations

import os
import tempfile

from config.paths import Paths
from core.errors import ReadOnlyHomeError

# Commands that only read the database; they work on a read-only home or database.
READ_COMMANDS = frozenset(
    {"runs", "show", "interventions", "export", "models", "doctor", "stats", "lessons"}
)


def read_only_reason(paths: Paths) -> str | None:
    """Why the home (or its database) cannot be written, or None when it can (or does not exist
    yet and its parent can be created in)."""
    home = paths.home
    probe = home
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return None  # Paths.ensure reports what is wrong with it
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".write-probe-"):
            pass
    except OSError as exc:
        return f"the home {home} is not writable ({exc.strerror or exc})"
    db = paths.db
    if db.exists() and not os.access(db, os.W_OK):
        return f"the state database {db} is read-only"
    return None


def refuse_write(command: str, reason: str) -> ReadOnlyHomeError:
    """The error a writing command gives on a read-only home: which path, and what to do."""
    reads = ", ".join(sorted(READ_COMMANDS - {"doctor"}))
    return ReadOnlyHomeError(
        f"{reason}, and `orchestrator {command}` needs to write there. Make it writable "
        "(e.g. remount it read-write or fix its permissions) or point --home/ORCHESTRATOR_HOME at a "
        f"writable folder; the read commands ({reads}) still work on it"
    )
