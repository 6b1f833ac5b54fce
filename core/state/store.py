"""The state store: the one class that reads and writes the orchestrator's database (the home's
SQLite file, or PostgreSQL when state.url names one: core/state/pg.py)."""

from __future__ import annotations

from core.state.actions import ActionsMixin
from core.state.claims import ClaimsMixin
from core.state.contexts import ContextsMixin
from core.state.db import BUSY_TIMEOUT_MS, LOCK_RETRY_SECONDS
from core.state.findings import OPEN_FINDING_STATUSES, FindingsMixin
from core.state.lessons import LessonsMixin
from core.state.logs import LOG_LEVELS, LogLine, LogsMixin
from core.state.phases import FINISHED_PHASE_STATUSES, PhasesMixin
from core.state.runs import RunsMixin
from core.state.snapshot import SnapshotMixin
from core.state.stats import StatsMixin
from core.state.transitions import ClosedRun, TransitionsMixin
from core.state.usage import UsageMixin

__all__ = [
    "BUSY_TIMEOUT_MS",
    "FINISHED_PHASE_STATUSES",
    "LOCK_RETRY_SECONDS",
    "LOG_LEVELS",
    "OPEN_FINDING_STATUSES",
    "ClosedRun",
    "LogLine",
    "StateStore",
]


class StateStore(
    SnapshotMixin,
    RunsMixin,
    PhasesMixin,
    TransitionsMixin,
    FindingsMixin,
    LogsMixin,
    UsageMixin,
    ContextsMixin,
    StatsMixin,
    LessonsMixin,
    ActionsMixin,
    ClaimsMixin,
):
    """Async access to runs, phases, executions, findings, interventions, logs, artifacts, usage.

    Open it with `await StateStore.open(path)`. The plumbing (one writer connection doing every
    write inside `BEGIN IMMEDIATE`, one query-only reader) lives in core.state.db; each topic's
    reads and writes live in its own mixin. Rows come back as core.records dataclasses; documents
    about runs are rendered outside the store (core.reports).

    Status changes: the engine makes them only through core.lifecycle, which calls the
    compare-and-set methods of core.state.transitions; update_run_status, update_phase_status,
    complete_execution, fail_execution, fail_running_executions, resolve_intervention and
    recover_run stay as the seed API for imports and tests (a test checks no engine code calls
    them). Reads present runs whose process is gone as interrupted (core.liveness).
    """
