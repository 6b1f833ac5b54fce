"""The state database's tables, their forward migrations, and how a row maps to a record.

Migrations are named and ordered: `MIGRATIONS` lists `(name, statements)` pairs, and the table
`schema_migrations` records the names a database has applied, so branches that each add a
migration merge by appending, without renumbering. Each is a list of single statements so it can
run inside the caller's transaction (sqlite3's executescript would commit early). Never edit or
rename a released migration: append a new one. `PRAGMA user_version` still counts the applied
migrations; databases from before names existed are read through it (their first N are applied).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from core.records import (
    Artifact,
    Execution,
    ExecutionStatus,
    Finding,
    FindingStatus,
    Intervention,
    InterventionKind,
    InterventionStatus,
    LogRecord,
    Phase,
    PhaseStatus,
    Run,
    RunStatus,
)

_V1: list[str] = [
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        repo TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        completed_at TEXT,
        updated_at TEXT,
        error TEXT,
        base_commit TEXT,
        branch TEXT,
        worktree TEXT,
        config TEXT NOT NULL DEFAULT '{}',
        metadata TEXT NOT NULL DEFAULT '{}',
        lease_owner TEXT,
        lease_expires_at TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX idx_runs_created ON runs(created_at)",
    "CREATE INDEX idx_runs_status ON runs(status, created_at)",
    """CREATE TABLE phases (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        plan_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        dependencies TEXT NOT NULL DEFAULT '[]',
        estimated_complexity TEXT NOT NULL DEFAULT 'medium',
        risk_level TEXT NOT NULL DEFAULT 'low',
        verification_criteria TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        base_commit TEXT,
        commit_sha TEXT,
        branch TEXT,
        worktree TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        completed_at TEXT,
        UNIQUE(run_id, plan_id)
    )""",
    "CREATE INDEX idx_phases_run ON phases(run_id, seq)",
    """CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        phase_id TEXT NOT NULL REFERENCES phases(id) ON DELETE CASCADE,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        attempt_number INTEGER NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        output TEXT,
        context TEXT,
        started_at TEXT NOT NULL,
        completed_at TEXT,
        UNIQUE(phase_id, attempt_number)
    )""",
    "CREATE INDEX idx_executions_run ON executions(run_id, status)",
    """CREATE TABLE findings (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase_id TEXT,
        execution_id TEXT REFERENCES executions(id) ON DELETE CASCADE,
        category TEXT NOT NULL,
        severity TEXT NOT NULL,
        tool TEXT NOT NULL,
        rule TEXT,
        path TEXT,
        line INTEGER,
        col INTEGER,
        message TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        resolved INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        resolved_at TEXT
    )""",
    "CREATE INDEX idx_findings_run ON findings(run_id, status, severity)",
    "CREATE INDEX idx_findings_execution ON findings(execution_id)",
    """CREATE TABLE artifacts (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase_id TEXT,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        type TEXT NOT NULL,
        size INTEGER NOT NULL,
        hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_artifacts_run ON artifacts(run_id)",
    """CREATE TABLE manual_interventions (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase_id TEXT,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        action_required TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        note TEXT,
        payload TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        resolved_at TEXT
    )""",
    "CREATE INDEX idx_interventions_run ON manual_interventions(run_id)",
    "CREATE INDEX idx_interventions_status ON manual_interventions(status)",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        phase_id TEXT,
        ts TEXT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
    )""",
    "CREATE INDEX idx_events_run_seq ON events(run_id, seq)",
    """CREATE TABLE llm_usage (
        id TEXT PRIMARY KEY,
        run_id TEXT,
        phase_id TEXT,
        execution_id TEXT,
        role TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        duration_ms REAL NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_llm_usage_run ON llm_usage(run_id, role)",
    """CREATE TABLE llm_cache (
        key TEXT PRIMARY KEY,
        response TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
]

# The LLM ledger: the attempt, prompt tokens served from the provider's cache, and the cost.
_V_LLM: list[str] = [
    "ALTER TABLE llm_usage ADD COLUMN attempt INTEGER",
    "ALTER TABLE llm_usage ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE llm_usage ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0",
    "CREATE INDEX idx_llm_usage_phase ON llm_usage(run_id, phase_id)",
]

# Verification: positions, source lines and tool output of findings.
_V_VERIFY: list[str] = [
    "ALTER TABLE findings ADD COLUMN end_line INTEGER",
    "ALTER TABLE findings ADD COLUMN end_col INTEGER",
    "ALTER TABLE findings ADD COLUMN snippet TEXT",
    "ALTER TABLE findings ADD COLUMN details TEXT",
    "ALTER TABLE findings ADD COLUMN help_url TEXT",
    "CREATE INDEX idx_findings_fingerprint ON findings(run_id, fingerprint)",
]

# The repository context each prompt got: the planner's (no execution) and every attempt's.
_V_RAG: list[str] = [
    """CREATE TABLE contexts (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        execution_id TEXT REFERENCES executions(id) ON DELETE CASCADE,
        purpose TEXT NOT NULL,
        query TEXT NOT NULL,
        text TEXT NOT NULL,
        sources TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_contexts_run ON contexts(run_id, created_at)",
]

# Lessons learned from ended runs (core/lessons.py) and who answered or changed a run.
_V_LESSONS_ACTORS: list[str] = [
    """CREATE TABLE lessons (
        id TEXT PRIMARY KEY,
        repo_key TEXT NOT NULL,
        repo TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        task TEXT NOT NULL,
        text TEXT NOT NULL,
        runs TEXT NOT NULL DEFAULT '[]',
        forgotten_runs TEXT NOT NULL DEFAULT '[]',
        forgotten_at TEXT,
        forgotten_by TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_lessons_repo ON lessons(repo_key, updated_at)",
    "ALTER TABLE manual_interventions ADD COLUMN answered_by TEXT",
    """CREATE TABLE run_actions (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        os_user TEXT,
        git_name TEXT,
        detail TEXT,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_run_actions_run ON run_actions(run_id, created_at)",
    # The git tree an attempt was verified on: a check that failed and then passed on the same
    # tree is flaky.
    "ALTER TABLE executions ADD COLUMN tree TEXT",
]

# Queue and workers: runs submitted for a worker (`queued`), the lease's fencing token (one more
# at every claim or take-over), and what a submitted run brought from the submitter's machine.
_V_QUEUE: list[str] = [
    "ALTER TABLE runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX idx_runs_queued ON runs(queued, status, created_at)",
    """CREATE TABLE run_inputs (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    )""",
]

Migration = tuple[str, list[str]]

# Applied in this order; a database records each name once it has run.
MIGRATIONS: list[Migration] = [
    ("initial", _V1),
    ("llm_usage", _V_LLM),
    ("verification", _V_VERIFY),
    ("rag_contexts", _V_RAG),
    ("lessons_and_actors", _V_LESSONS_ACTORS),
    ("queue_and_fencing", _V_QUEUE),
]
SCHEMA_VERSION = len(MIGRATIONS)

_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations this database has applied, oldest first."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ).fetchone()
    if not exists:
        return []
    return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> int:
    """Apply pending migrations on a connection already inside BEGIN IMMEDIATE; returns the count."""
    steps = MIGRATIONS if migrations is None else migrations
    known = [name for name, _ in steps]
    applied = applied_migrations(conn)
    conn.execute(_LEDGER)
    if not applied:
        # A database from before named migrations: its user_version counts the first ones applied.
        legacy = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if legacy > len(steps):
            raise newer_error(legacy, len(steps))
        applied = known[:legacy]
        conn.executemany("INSERT INTO schema_migrations(name) VALUES (?)", [(n,) for n in applied])
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise newer_error(len(applied), len(steps), unknown)
    done = set(applied)
    for name, statements in steps:
        if name in done:
            continue
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations(name) VALUES (?)", (name,))
        done.add(name)
    conn.execute(f"PRAGMA user_version = {len(done)}")
    return len(done)


def newer_error(have: int, know: int, unknown: list[str] | None = None) -> sqlite3.DatabaseError:
    """The error for a database written by a newer orchestrator than this one."""
    names = f" ({', '.join(unknown)})" if unknown else ""
    return sqlite3.DatabaseError(
        f"the database's schema is newer than this program's: it has {have} migrations{names}, "
        f"this program knows {know}; upgrade the orchestrator (every machine sharing this "
        "database needs that version or newer), or point --home/ORCHESTRATOR_HOME or --db elsewhere"
    )


def dumps(value: Any) -> str:
    """JSON-encode a column value; unknown types (paths, enums) become strings."""
    return json.dumps(value, default=str, sort_keys=True)


def _loads(text: str | None, default: Any) -> Any:
    """Decode a JSON column, falling back to `default` for NULL."""
    return default if text is None else json.loads(text)


def _seen(r: sqlite3.Row) -> bool:
    """Whether a read added core.liveness's seen_* columns to the row."""
    return "seen_status" in r.keys()  # noqa: SIM118  (`in` on a Row looks at values)


def run_from_row(r: sqlite3.Row) -> Run:
    """Map a runs row to a Run; a read's seen_* columns (core.liveness) win over the stored ones."""
    seen = "seen_status" in r.keys()  # noqa: SIM118  (`in` on a Row looks at values)
    prefix = "seen_" if seen else ""
    return Run(
        id=r["id"],
        task=r["task"],
        repo=r["repo"],
        status=RunStatus(r[prefix + "status"]),
        created_at=r["created_at"],
        started_at=r["started_at"],
        completed_at=r[prefix + "completed_at"],
        updated_at=r["updated_at"],
        error=r[prefix + "error"],
        base_commit=r["base_commit"],
        branch=r["branch"],
        worktree=r["worktree"],
        config=_loads(r["config"], {}),
        metadata=_loads(r["metadata"], {}),
        lease_owner=r["lease_owner"],
        lease_expires_at=r["lease_expires_at"],
        cancel_requested=bool(r["cancel_requested"]),
        lost=seen and r["seen_status"] != r["status"],
        queued="queued" in r.keys() and bool(r["queued"]),  # noqa: SIM118
    )


def phase_from_row(r: sqlite3.Row) -> Phase:
    """Map a phases row to a Phase."""
    return Phase(
        id=r["id"],
        run_id=r["run_id"],
        plan_id=r["plan_id"],
        seq=r["seq"],
        name=r["name"],
        description=r["description"],
        status=PhaseStatus(r["seen_status"] if _seen(r) else r["status"]),
        dependencies=_loads(r["dependencies"], []),
        estimated_complexity=r["estimated_complexity"],
        risk_level=r["risk_level"],
        verification_criteria=_loads(r["verification_criteria"], []),
        attempts=r["attempts"],
        max_attempts=r["max_attempts"],
        base_commit=r["base_commit"],
        commit=r["commit_sha"],
        branch=r["branch"],
        worktree=r["worktree"],
        error=r["error"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        completed_at=r["completed_at"],
    )


def execution_from_row(r: sqlite3.Row) -> Execution:
    """Map an executions row to an Execution."""
    return Execution(
        id=r["id"],
        phase_id=r["phase_id"],
        run_id=r["run_id"],
        attempt=r["attempt_number"],
        status=ExecutionStatus(r["seen_status"] if _seen(r) else r["status"]),
        error=r["seen_error"] if _seen(r) else r["error"],
        output=r["output"],
        context=r["context"],
        started_at=r["started_at"],
        completed_at=r["completed_at"],
    )


def finding_from_row(r: sqlite3.Row) -> Finding:
    """Map a findings row to a Finding."""
    return Finding(
        id=r["id"],
        run_id=r["run_id"],
        phase_id=r["phase_id"],
        execution_id=r["execution_id"],
        category=r["category"],
        severity=r["severity"],
        tool=r["tool"],
        rule=r["rule"],
        path=r["path"],
        line=r["line"],
        column=r["col"],
        message=r["message"],
        fingerprint=r["fingerprint"],
        status=FindingStatus(r["status"]),
        created_at=r["created_at"],
        resolved_at=r["resolved_at"],
        end_line=r["end_line"],
        end_column=r["end_col"],
        snippet=r["snippet"],
        details=r["details"],
        help_url=r["help_url"],
    )


def intervention_from_row(r: sqlite3.Row) -> Intervention:
    """Map a manual_interventions row to an Intervention."""
    return Intervention(
        id=r["id"],
        run_id=r["run_id"],
        phase_id=r["phase_id"],
        kind=InterventionKind(r["kind"]),
        reason=r["reason"],
        action_required=r["action_required"],
        status=InterventionStatus(r["status"]),
        note=r["note"],
        created_at=r["created_at"],
        resolved_at=r["resolved_at"],
        payload=_loads(r["payload"], {}),
        answered_by=r["answered_by"] if "answered_by" in r.keys() else None,  # noqa: SIM118
    )


def artifact_from_row(r: sqlite3.Row) -> Artifact:
    """Map an artifacts row to an Artifact."""
    return Artifact(
        id=r["id"],
        run_id=r["run_id"],
        phase_id=r["phase_id"],
        name=r["name"],
        path=r["path"],
        type=r["type"],
        size=r["size"],
        hash=r["hash"],
        created_at=r["created_at"],
    )


def log_from_row(r: sqlite3.Row) -> LogRecord:
    """Map an events row to a LogRecord."""
    return LogRecord(
        seq=r["seq"],
        run_id=r["run_id"],
        phase_id=r["phase_id"],
        ts=r["ts"],
        level=r["level"],
        message=r["message"],
    )
