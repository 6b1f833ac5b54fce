"""Statuses and the row records the state store returns; plain frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    PENDING = "pending"
    PLANNING = "planning"
    EXECUTING = "executing"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATUSES = frozenset(
    {RunStatus.PENDING, RunStatus.PLANNING, RunStatus.EXECUTING, RunStatus.WAITING}
)
FINISHED_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class PhaseStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class InterventionKind(StrEnum):
    RISK = "risk"
    PHASE_FAILED = "phase_failed"
    THRESHOLD = "threshold"
    MERGE_CONFLICT = "merge_conflict"
    BUDGET = "budget"
    COMMAND = (
        "command"  # a command named in a phase's criteria, not in verification.allowed_commands
    )
    AGENT_PERMISSION = "agent_permission"  # a coding agent asks to run a tool (ACP)


# Kinds that need no input from the person, so `--yes` may approve them.
AUTO_APPROVABLE_KINDS = frozenset({InterventionKind.RISK, InterventionKind.THRESHOLD})
# The note stored with an answer `--yes` gave (nobody waited for it; analytics count it apart).
AUTO_APPROVED_NOTE = "auto-approved"


class InterventionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # its run ended (cancelled, failed, completed) before an answer


class Severity(StrEnum):
    MAJOR = "major"
    MEDIUM = "medium"
    MINOR = "minor"


class Category(StrEnum):
    BUILD = "build"
    TEST = "test"
    LINT = "lint"
    SECURITY = "security"
    CUSTOM = "custom"


class FindingStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    RESOLVED = "resolved"
    BASELINE = "baseline"


RISK_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass(frozen=True)
class Run:
    id: str
    task: str
    repo: str
    status: RunStatus
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    updated_at: str | None = None
    error: str | None = None
    base_commit: str | None = None
    branch: str | None = None
    worktree: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_expires_at: str | None = None
    cancel_requested: bool = False
    # Read as interrupted because its driving process is gone, though not yet recorded so
    # (core.liveness); the next writing command records it through core.lifecycle.
    lost: bool = False
    queued: bool = False  # submitted for a worker (`orchestrator submit`)


@dataclass(frozen=True)
class RunSummary:
    """A run as listed by `runs`: the row plus phase progress and open findings by severity."""

    run: Run
    phases_total: int
    phases_completed: int
    findings: dict[str, int]  # {"major": n, "medium": n, "minor": n}, open findings only
    tokens: int = 0  # prompt + completion tokens of the run's model calls (cached answers: none)
    cost_usd: float = 0.0  # the ledger's cost of those calls


@dataclass(frozen=True)
class Phase:
    id: str  # unique across runs
    run_id: str
    plan_id: str  # the id the planner gave, e.g. "phase-001"
    seq: int  # position in the plan
    name: str
    description: str
    status: PhaseStatus
    dependencies: list[str]  # plan ids
    estimated_complexity: str
    risk_level: str
    verification_criteria: list[str]
    attempts: int  # executions created so far
    max_attempts: int
    base_commit: str | None = None
    commit: str | None = None  # full SHA of the phase commit once completed
    branch: str | None = None
    worktree: str | None = None
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None


@dataclass(frozen=True)
class Execution:
    id: str
    phase_id: str
    run_id: str
    attempt: int
    status: ExecutionStatus
    error: str | None
    output: str | None
    context: str | None  # the retrieved context the prompt got
    started_at: str
    completed_at: str | None


@dataclass(frozen=True)
class FindingIn:
    """A finding as a verifier produces it, before it is stored."""

    category: Category
    severity: Severity
    tool: str
    message: str
    rule: str | None = None
    path: str | None = None
    line: int | None = None
    column: int | None = None
    fingerprint: str | None = None  # computed by verify.findings.fingerprint when None
    end_line: int | None = None
    end_column: int | None = None
    snippet: str | None = None  # the source line the finding points at
    details: str | None = None  # longer tool output: a traceback, the output tail, a fix hint
    help_url: str | None = None  # the tool's documentation of the rule


@dataclass(frozen=True)
class Finding:
    id: str
    run_id: str
    phase_id: str | None
    execution_id: str | None
    category: str
    severity: str
    tool: str
    rule: str | None
    path: str | None
    line: int | None
    column: int | None
    message: str
    fingerprint: str
    status: FindingStatus
    created_at: str
    resolved_at: str | None = None
    end_line: int | None = None
    end_column: int | None = None
    snippet: str | None = None
    details: str | None = None
    help_url: str | None = None

    @property
    def location(self) -> str | None:
        """The seed's "path:line" form, or None when the tool gave no path."""
        if self.path is None:
            return None
        return f"{self.path}:{self.line}" if self.line is not None else self.path


@dataclass(frozen=True)
class Intervention:
    id: str
    run_id: str
    phase_id: str | None
    kind: InterventionKind
    reason: str
    action_required: str  # what approve and reject will do, for the person deciding
    status: InterventionStatus
    note: str | None
    created_at: str
    resolved_at: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    answered_by: str | None = None  # who approved or rejected it (core/actors.py)


@dataclass(frozen=True)
class Artifact:
    id: str
    run_id: str
    phase_id: str | None
    name: str
    path: str
    type: str  # summary, diff, report, log
    size: int
    hash: str  # sha256 hex
    created_at: str


@dataclass(frozen=True)
class LogRecord:
    seq: int
    run_id: str
    phase_id: str | None
    ts: str
    level: str
    message: str


@dataclass(frozen=True)
class Usage:
    role: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    calls: int
    cost_usd: float = 0.0  # from models.yaml prices; 0 for free local models and cached answers


@dataclass(frozen=True)
class UsageTotals:
    """Model calls summed over a run, a phase or the planning step: tokens, cost and time."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider served from its cache
    cost_usd: float = 0.0
    duration_ms: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class RunUsage:
    """The ledger of one run: totals for the run, for planning, and per phase (by plan id)."""

    run_id: str
    total: UsageTotals
    planning: UsageTotals  # calls made outside any phase (the planner)
    phases: dict[str, UsageTotals] = field(default_factory=dict)  # plan id -> totals, plan order


@dataclass(frozen=True)
class StatsRows:
    """Aggregated rows, one list per figure, as the store grouped them (core/stats.py shapes them).

    runs: (day, status, runs); usage: (day, model, role, calls, prompt, completion, cached, cost);
    attempts: (attempts, phase status, phases); findings: (day, severity, category, findings);
    open_findings: (severity, findings) of findings still open; waits: (day, kind, status,
    created_at, resolved_at, answered by `--yes`) of every intervention; checks: (category, tool,
    attempts, findings, major); phases: (phases, completed).
    """

    runs: list[tuple[str, str, int]]
    usage: list[tuple[str, str, str, int, int, int, int, float]]
    attempts: list[tuple[int, str, int]]
    findings: list[tuple[str, str, str, int]]
    open_findings: list[tuple[str, int]]
    waits: list[tuple[str, str, str, str, str | None, bool]]
    checks: list[tuple[str, str, int, int, int]]
    phases: tuple[int, int]


@dataclass(frozen=True)
class RunAction:
    """A command a person gave that changed a run (started, resumed, cancelled, applied...)."""

    id: str
    run_id: str
    action: str
    actor: str  # what listings show: --as NAME, else "os user (git user.name)"
    os_user: str | None
    git_name: str | None
    detail: str | None
    created_at: str


@dataclass(frozen=True)
class Lesson:
    """Something learned from ended runs on one repository (core/lessons.py derives them)."""

    id: str
    repo_key: str  # the repository's root commit
    repo: str  # its path when last seen
    kind: str  # phase_failed, finding_returned, flaky_check
    subject: str  # what it is about: a phase title, a finding's fingerprint, a check
    task: str  # the task of the run it came from last, for relevance
    text: str  # the lesson as the prompt shows it (redacted)
    runs: list[str]  # the runs it came from
    forgotten_runs: list[str]  # runs whose evidence a person forgot (never learned again)
    forgotten_at: str | None
    forgotten_by: str | None
    created_at: str
    updated_at: str

    @property
    def forgotten(self) -> bool:
        """Whether a person forgot it and no new run brought it back."""
        return self.forgotten_at is not None
