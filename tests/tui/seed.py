"""Realistic, deterministic data for TUI tests and screenshots, written straight into a fresh store.

Everything has fixed ids and fixed timestamps so snapshots do not change between runs:

- MAIN_RUN (waiting): five phases with dependencies in several states (completed after a retry,
  in progress on its second attempt, pending behind a pending risk intervention, pending on two
  dependencies, skipped after a rejected intervention), findings of every severity and status,
  token usage of two roles, and `log_lines` log lines (more than the live log keeps in memory).
- A completed, a failed, an interrupted and a cancelled run, each with phases and findings.
- `quick_runs` small completed runs for paging tests.

The app is meant to be created with `clock=SEED_NOW` so durations of active runs are fixed too.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.state import schema

SEED_NOW = datetime(2026, 11, 20, 9, 30, 0, tzinfo=UTC)
MAIN_RUN = "r5eed0main"
COMPLETED_RUN = "r5eed0done"
FAILED_RUN = "r5eed0fail"
INTERRUPTED_RUN = "r5eed0intr"
CANCELLED_RUN = "r5eed0cncl"
PENDING_INTERVENTION = "i5eed0risk"
REJECTED_INTERVENTION = "i5eed0skip"
REPO = "/home/dev/src/inventory-service"
MAIN_TASK = "Add input validation and a CSV export to the inventory store"


def ts(minutes: float) -> str:
    """The timestamp `minutes` after 08:00 on the seed day, in the store's format."""
    value = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Seeded:
    """What was written, for assertions."""

    db: Path
    run_ids: list[str]
    log_lines: int


def open_db(db: Path) -> sqlite3.Connection:
    """Create (or open) the database file and bring it to the current schema."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    schema.migrate(conn)
    conn.execute("COMMIT")
    return conn


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    values = [json.dumps(v) if isinstance(v, list | dict) else v for v in row.values()]
    conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", values)


def _run(
    conn: sqlite3.Connection,
    run_id: str,
    task: str,
    status: str,
    start: float,
    end: float | None,
    *,
    repo: str = REPO,
    error: str | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    _insert(
        conn,
        "runs",
        {
            "id": run_id,
            "task": task,
            "repo": repo,
            "status": status,
            "created_at": ts(start),
            "started_at": ts(start + 0.1),
            "completed_at": None if end is None else ts(end),
            "updated_at": ts(end if end is not None else start + 40),
            "error": error,
            "base_commit": "4f1c2b9d0e8a7c6b5a49382716f0e1d2c3b4a596",
            "branch": f"orchestrator/{run_id}",
            "worktree": f"/home/dev/.local/share/agent-orchestrator/worktrees/{run_id}/run",
            "config": config
            or {"llm": {"provider": "ollama"}, "models": {"planner": "qwen2.5-coder:7b"}},
            "metadata": {},
        },
    )


def _phase(
    conn: sqlite3.Connection,
    run_id: str,
    seq: int,
    name: str,
    status: str,
    *,
    deps: list[str] | None = None,
    risk: str = "low",
    attempts: int = 0,
    start: float | None = None,
    end: float | None = None,
    error: str | None = None,
    commit: str | None = None,
) -> str:
    phase_id = f"p{run_id[-6:]}{seq:02d}"
    _insert(
        conn,
        "phases",
        {
            "id": phase_id,
            "run_id": run_id,
            "plan_id": f"phase-{seq:03d}",
            "seq": seq,
            "name": name,
            "description": f"{name}, with tests.",
            "status": status,
            "dependencies": deps or [],
            "estimated_complexity": "medium",
            "risk_level": risk,
            "verification_criteria": ["unit tests pass", "lint is clean"],
            "attempts": attempts,
            "max_attempts": 3,
            "base_commit": None if start is None else "4f1c2b9d0e8a7c6b5a49382716f0e1d2c3b4a596",
            "commit_sha": commit,
            "branch": None if start is None else f"orchestrator/{run_id}",
            "worktree": None,
            "error": error,
            "created_at": ts(0),
            "started_at": None if start is None else ts(start),
            "completed_at": None if end is None else ts(end),
        },
    )
    return phase_id


def _execution(
    conn: sqlite3.Connection,
    run_id: str,
    phase_id: str,
    attempt: int,
    status: str,
    start: float,
    end: float | None,
    error: str | None = None,
) -> str:
    execution_id = f"e{phase_id[1:]}{attempt}"
    _insert(
        conn,
        "executions",
        {
            "id": execution_id,
            "phase_id": phase_id,
            "run_id": run_id,
            "attempt_number": attempt,
            "status": status,
            "error": error,
            "output": "applied 2 SEARCH/REPLACE blocks" if status == "succeeded" else None,
            "context": None,
            "started_at": ts(start),
            "completed_at": None if end is None else ts(end),
        },
    )
    return execution_id


def _finding(
    conn: sqlite3.Connection,
    run_id: str,
    phase_id: str,
    execution_id: str,
    n: int,
    severity: str,
    category: str,
    tool: str,
    message: str,
    *,
    status: str = "open",
    path: str | None = None,
    line: int | None = None,
    rule: str | None = None,
    at: float = 0,
) -> None:
    _insert(
        conn,
        "findings",
        {
            "id": f"f{run_id[-6:]}{n:02d}",
            "run_id": run_id,
            "phase_id": phase_id,
            "execution_id": execution_id,
            "category": category,
            "severity": severity,
            "tool": tool,
            "rule": rule,
            "path": path,
            "line": line,
            "col": None if line is None else 5,
            "message": message,
            "fingerprint": f"fp{run_id}{n}",
            "status": status,
            "resolved": 1 if status == "resolved" else 0,
            "created_at": ts(at),
            "resolved_at": ts(at + 3) if status == "resolved" else None,
        },
    )


def _usage(
    conn: sqlite3.Connection, run_id: str, role: str, prompt: int, completion: int, n: int
) -> None:
    for i in range(n):
        _insert(
            conn,
            "llm_usage",
            {
                "id": f"u{run_id[-6:]}{role[:3]}{i}",
                "run_id": run_id,
                "phase_id": None,
                "execution_id": None,
                "role": role,
                "provider": "ollama",
                "model": "qwen2.5-coder:7b",
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "duration_ms": 850.0,
                "cached": 0,
                "created_at": ts(1 + i),
            },
        )


_TEST_FAILURE = """pytest -q exited 1
FAILED tests/test_store.py::test_rejects_negative_quantity - AssertionError
    def test_rejects_negative_quantity():
>       with pytest.raises(ValueError):
E       Failed: DID NOT RAISE <class 'ValueError'>
tests/test_store.py:41: Failed
1 failed, 17 passed in 0.42s"""

_EXPORT_FAILURE = """pytest -q exited 1
FAILED tests/test_export.py::test_csv_header - AssertionError: assert 'sku,name,qty' == 'sku,name,quantity'
1 failed, 19 passed in 0.51s"""


def _main_run(conn: sqlite3.Connection, log_lines: int) -> None:
    run = MAIN_RUN
    _run(conn, run, MAIN_TASK, "waiting", 60, None)
    p1 = _phase(
        conn,
        run,
        1,
        "Validate item input",
        "completed",
        attempts=2,
        start=61,
        end=66.5,
        commit="a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    )
    p2 = _phase(
        conn,
        run,
        2,
        "CSV export of the inventory",
        "in_progress",
        deps=["phase-001"],
        attempts=2,
        start=67,
    )
    p3 = _phase(conn, run, 3, "Bulk import endpoint", "pending", deps=["phase-001"], risk="high")
    _phase(conn, run, 4, "Document the CSV format", "pending", deps=["phase-002", "phase-003"])
    p5 = _phase(
        conn,
        run,
        5,
        "Drop the legacy importer",
        "skipped",
        deps=["phase-001"],
        risk="critical",
        error="rejected by the user: keep it until the next release",
    )
    e11 = _execution(conn, run, p1, 1, "failed", 61, 63.5, "verification failed: 1 major finding")
    e12 = _execution(conn, run, p1, 2, "succeeded", 63.6, 66.4)
    e21 = _execution(conn, run, p2, 1, "failed", 67, 69.2, "verification failed: 1 major finding")
    _execution(conn, run, p2, 2, "running", 69.3, None)
    _finding(
        conn,
        run,
        p1,
        e11,
        1,
        "major",
        "test",
        "pytest",
        _TEST_FAILURE,
        status="resolved",
        path="tests/test_store.py",
        line=41,
        at=63.4,
    )
    _finding(
        conn,
        run,
        p2,
        e21,
        2,
        "major",
        "test",
        "pytest",
        _EXPORT_FAILURE,
        path="tests/test_export.py",
        line=12,
        at=69.1,
    )
    _finding(
        conn,
        run,
        p1,
        e12,
        3,
        "medium",
        "lint",
        "ruff",
        "inventory/store.py:88:5: C901 `add_item` is too complex (12 > 10)",
        path="inventory/store.py",
        line=88,
        rule="C901",
        at=66.3,
    )
    _finding(
        conn,
        run,
        p1,
        e12,
        4,
        "minor",
        "lint",
        "ruff",
        "inventory/validate.py:14:1: E501 Line too long (104 > 100)",
        path="inventory/validate.py",
        line=14,
        rule="E501",
        at=66.3,
    )
    _finding(
        conn,
        run,
        p2,
        e21,
        5,
        "minor",
        "lint",
        "ruff",
        "inventory/export.py:3:1: F401 `io` imported but unused",
        path="inventory/export.py",
        line=3,
        rule="F401",
        at=69.1,
    )
    _finding(
        conn,
        run,
        p1,
        e11,
        6,
        "medium",
        "build",
        "compileall",
        "inventory/validate.py: SyntaxWarning: invalid escape sequence '\\d'",
        status="baseline",
        path="inventory/validate.py",
        line=22,
        at=63.4,
    )
    _insert(
        conn,
        "manual_interventions",
        {
            "id": PENDING_INTERVENTION,
            "run_id": run,
            "phase_id": p3,
            "kind": "risk",
            "reason": "phase phase-003 'Bulk import endpoint' is high risk",
            "action_required": "approve: run the phase; reject: skip it and the phases that depend on it",
            "status": "pending",
            "note": None,
            "payload": {"risk_level": "high"},
            "created_at": ts(66.6),
            "resolved_at": None,
        },
    )
    _insert(
        conn,
        "manual_interventions",
        {
            "id": REJECTED_INTERVENTION,
            "run_id": run,
            "phase_id": p5,
            "kind": "risk",
            "reason": "phase phase-005 'Drop the legacy importer' is critical risk",
            "action_required": "approve: run the phase; reject: skip it and the phases that depend on it",
            "status": "rejected",
            "note": "keep it until the next release",
            "payload": {"risk_level": "critical"},
            "created_at": ts(66.6),
            "resolved_at": ts(66.9),
        },
    )
    _usage(conn, run, "planner", 1840, 612, 1)
    _usage(conn, run, "executor", 3120, 945, 3)
    phases = [p1, p2]
    rows = []
    for i in range(log_lines):
        phase = phases[i % 2] if i > 5 else None
        level = "warning" if i % 97 == 0 else "info"
        where = "phase-001" if phase == p1 else "phase-002" if phase else "run"
        what = "running pytest -q" if i % 5 == 0 else "model output chunk"
        rows.append((run, phase, ts(60 + i * 0.002), level, f"[{where}] step {i + 1}: {what}"))
    conn.executemany(
        "INSERT INTO events (run_id, phase_id, ts, level, message) VALUES (?, ?, ?, ?, ?)", rows
    )


def _other_runs(conn: sqlite3.Connection) -> None:
    _run(conn, COMPLETED_RUN, "Add a health check endpoint", "completed", 0, 12.5)
    for seq, name in enumerate(("Health check route", "Readiness probe", "Docs"), 1):
        pid = _phase(
            conn,
            COMPLETED_RUN,
            seq,
            name,
            "completed",
            deps=[] if seq == 1 else ["phase-001"],
            attempts=1,
            start=seq * 3,
            end=seq * 3 + 2.5,
            commit=f"{seq}" * 40,
        )
        _execution(conn, COMPLETED_RUN, pid, 1, "succeeded", seq * 3, seq * 3 + 2.5)
    _usage(conn, COMPLETED_RUN, "planner", 900, 300, 1)
    _usage(conn, COMPLETED_RUN, "executor", 1500, 500, 3)

    _run(
        conn,
        FAILED_RUN,
        "Migrate the settings file to TOML",
        "failed",
        15,
        31,
        repo="/home/dev/src/settings-lib",
        error="phase phase-002 failed after 3 attempts",
    )
    f1 = _phase(
        conn,
        FAILED_RUN,
        1,
        "TOML reader",
        "completed",
        attempts=1,
        start=16,
        end=19,
        commit="b" * 40,
    )
    _execution(conn, FAILED_RUN, f1, 1, "succeeded", 16, 19)
    f2 = _phase(
        conn,
        FAILED_RUN,
        2,
        "Convert existing files",
        "failed",
        deps=["phase-001"],
        attempts=3,
        start=19.5,
        end=30.5,
        error="verification failed: 2 major findings",
    )
    _phase(conn, FAILED_RUN, 3, "Remove the INI reader", "skipped", deps=["phase-002"])
    for attempt in (1, 2, 3):
        e = _execution(
            conn,
            FAILED_RUN,
            f2,
            attempt,
            "failed",
            19.5 + attempt * 3,
            21 + attempt * 3,
            "verification failed: 1 major finding",
        )
        if attempt == 3:
            _finding(
                conn,
                FAILED_RUN,
                f2,
                e,
                1,
                "major",
                "test",
                "pytest",
                "pytest -q exited 1\nFAILED tests/test_convert.py::test_roundtrip",
                path="tests/test_convert.py",
                line=30,
                at=30,
            )
            _finding(
                conn,
                FAILED_RUN,
                f2,
                e,
                2,
                "medium",
                "lint",
                "mypy",
                "settings/convert.py:12: error: Missing return statement",
                path="settings/convert.py",
                line=12,
                at=30,
            )

    _run(
        conn,
        INTERRUPTED_RUN,
        "Cache product lookups",
        "interrupted",
        35,
        None,
        error="interrupted by SIGTERM",
    )
    i1 = _phase(
        conn,
        INTERRUPTED_RUN,
        1,
        "Cache layer",
        "completed",
        attempts=1,
        start=36,
        end=39,
        commit="c" * 40,
    )
    _execution(conn, INTERRUPTED_RUN, i1, 1, "succeeded", 36, 39)
    i2 = _phase(
        conn,
        INTERRUPTED_RUN,
        2,
        "Invalidate on write",
        "in_progress",
        deps=["phase-001"],
        attempts=1,
        start=39.5,
    )
    _execution(conn, INTERRUPTED_RUN, i2, 1, "running", 39.5, None)
    conn.execute(
        "UPDATE runs SET completed_at = NULL, updated_at = ? WHERE id = ?",
        (ts(41), INTERRUPTED_RUN),
    )

    _run(
        conn,
        CANCELLED_RUN,
        "Rename the inventory package",
        "cancelled",
        45,
        47,
        error="cancelled by the user",
    )
    _phase(conn, CANCELLED_RUN, 1, "Rename imports", "pending")


def _quick_runs(conn: sqlite3.Connection, n: int) -> list[str]:
    """`n` small completed runs, older than the seeded ones, oldest last in the newest-first list."""
    ids = [f"rq{i:08d}" for i in range(n)]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i, run_id in enumerate(ids):
        created = (base + timedelta(minutes=i)).isoformat(timespec="microseconds")
        created = created.replace("+00:00", "Z")
        done = (base + timedelta(minutes=i, seconds=40)).isoformat(timespec="microseconds")
        done = done.replace("+00:00", "Z")
        rows.append(
            (
                run_id,
                f"Quick task number {i}",
                f"/home/dev/src/repo{i % 7}",
                "completed",
                created,
                created,
                done,
                done,
                "{}",
                "{}",
            )
        )
    conn.executemany(
        "INSERT INTO runs (id, task, repo, status, created_at, started_at, completed_at,"
        " updated_at, config, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return ids


def seed(db: Path, *, log_lines: int = 2500, quick_runs: int = 0, rich: bool = True) -> Seeded:
    """Write the seed data into the database at `db` (created if missing)."""
    conn = open_db(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        run_ids: list[str] = []
        if quick_runs:
            run_ids += _quick_runs(conn, quick_runs)
        if rich:
            _main_run(conn, log_lines)
            _other_runs(conn)
            run_ids += [COMPLETED_RUN, FAILED_RUN, INTERRUPTED_RUN, CANCELLED_RUN, MAIN_RUN]
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Seeded(db=db, run_ids=run_ids, log_lines=log_lines if rich else 0)
