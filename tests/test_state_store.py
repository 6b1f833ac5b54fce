"""StateStore against real SQLite files and a real PostgreSQL: schema, durability settings, every
table, concurrency (the tests taking the `store` fixture run on both backends)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import AlreadyAnsweredError, NotFoundError, StateError, TransitionError
from core.liveness import LAST_WORKER
from core.records import (
    Category,
    ExecutionStatus,
    FindingIn,
    FindingStatus,
    InterventionKind,
    InterventionStatus,
    PhaseStatus,
    RunStatus,
    Severity,
)
from core.reports.document import run_document
from core.reports.export import export_text
from core.state import schema
from core.state.store import StateStore
from tui.format import holder_cell

ROOT = Path(__file__).resolve().parents[1]

PLAN = [
    {
        "id": "phase-001",
        "name": "Add parser",
        "description": "Write the parser",
        "dependencies": [],
        "estimated_complexity": "low",
        "risk_level": "low",
        "verification_criteria": ["tests pass"],
    },
    {
        "id": "phase-002",
        "name": "Wire CLI",
        "description": "Expose it",
        "dependencies": ["phase-001"],
        "estimated_complexity": "medium",
        "risk_level": "high",
        "verification_criteria": ["cli works", "lint clean"],
    },
]


@pytest.fixture
async def store(backend: tuple[Path, str | None]) -> AsyncIterator[StateStore]:
    """A fresh store on each backend: a SQLite file in a temporary directory, then a fresh
    PostgreSQL database (tests/pg_support.py)."""
    path, url = backend
    async with await StateStore.open(path, url=url) as s:
        yield s


def finding(severity: Severity = Severity.MAJOR, message: str = "boom", **kw: object) -> FindingIn:
    """A test finding with sensible defaults."""
    return FindingIn(
        category=kw.pop("category", Category.TEST),  # type: ignore[arg-type]
        severity=severity,
        tool=str(kw.pop("tool", "pytest")),
        message=message,
        **kw,  # type: ignore[arg-type]
    )


# -- schema and durability -------------------------------------------------------------------


async def test_fresh_file_is_migrated_and_version_persists(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = await StateStore.open(path)
    run = await store.create_run("task", str(tmp_path), {"a": 1})
    await store.close()
    with sqlite3.connect(path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    expected = {"runs", "phases", "executions", "findings", "artifacts", "manual_interventions"}
    assert expected | {"events", "llm_usage", "llm_cache"} <= tables
    async with await StateStore.open(path) as again:
        assert (await again.get_run(run.id)).config == {"a": 1}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


async def test_forward_migrations_apply_in_order_and_roll_back_on_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await (await StateStore.open(path)).close()
    conn = sqlite3.connect(path, isolation_level=None)
    v2 = [*schema.MIGRATIONS, ("runs_extra", ["ALTER TABLE runs ADD COLUMN extra TEXT"])]
    bad = [*v2, ("later", ["CREATE TABLE later (x INT)", "THIS IS NOT SQL"])]
    conn.execute("BEGIN IMMEDIATE")
    newer = len(v2)  # one past what this program knows
    assert schema.migrate(conn, v2) == newer
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn, bad)
    conn.execute("ROLLBACK")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == newer
    assert "extra" in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "later" not in names
    conn.close()
    # The program knows one version less, so the newer file is refused with a clear error.
    with pytest.raises(StateError, match="newer"):
        await StateStore.open(path)


def test_migrations_are_applied_by_name_whatever_order_branches_merged_in(tmp_path: Path) -> None:
    # Two branches each appended a migration; a database that got one of them first still gets
    # the other, and a database from before names existed keeps what its user_version counted.
    base = list(schema.MIGRATIONS)
    one = ("branch_one", ["CREATE TABLE one (x INT)"])
    two = ("branch_two", ["CREATE TABLE two (x INT)"])
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    schema.migrate(conn, [*base, two])
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    assert schema.migrate(conn, [*base, one, two]) == len(base) + 2
    conn.execute("COMMIT")
    assert schema.applied_migrations(conn)[-2:] == ["branch_two", "branch_one"]
    conn.close()

    legacy = sqlite3.connect(tmp_path / "legacy.db", isolation_level=None)
    legacy.execute("BEGIN IMMEDIATE")
    for _, statements in base[:2]:
        for statement in statements:
            legacy.execute(statement)
    legacy.execute("PRAGMA user_version = 2")
    legacy.execute("COMMIT")
    legacy.execute("BEGIN IMMEDIATE")
    assert schema.migrate(legacy, base) == len(base)
    legacy.execute("COMMIT")
    assert schema.applied_migrations(legacy) == [name for name, _ in base]
    legacy.close()


async def test_wal_mode_and_owner_only_file_modes(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await StateStore.open(path) as store:
        await store.create_run("t", str(tmp_path), {})
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for suffix in ("", "-wal", "-shm"):
            f = Path(f"{path}{suffix}")
            assert f.exists(), suffix
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, suffix


async def test_closed_store_and_database_errors_raise_state_error(
    tmp_path: Path, backend: tuple[Path, str | None]
) -> None:
    path, url = backend
    store = await StateStore.open(path, url=url)
    run = await store.create_run("t", str(tmp_path), {})
    phase = (await store.save_plan(run.id, PLAN, 3))[0]
    await store.create_execution(phase.id, run.id, attempt=1)
    with pytest.raises(StateError, match="UNIQUE|unique constraint"):
        await store.create_execution(phase.id, run.id, attempt=1)
    assert (await store.get_run(run.id)).id == run.id, "the store works on after the refusal"
    await store.close()
    await store.close()
    with pytest.raises(StateError, match="closed"):
        await store.get_run(run.id)
    with pytest.raises(StateError, match="closed"):
        await store.create_run("t", str(tmp_path), {})


# -- runs ------------------------------------------------------------------------------------


async def test_run_lifecycle_timestamps_and_metadata(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("do it", str(tmp_path / "." / "repo"), {"k": "v"}, {"m": 1})
    assert run.id.startswith("r") and len(run.id) == 11
    assert run.status is RunStatus.PENDING and run.repo == str(tmp_path / "repo")
    assert run.started_at is None and run.completed_at is None and run.metadata == {"m": 1}
    planning = await store.update_run_status(run.id, RunStatus.PLANNING)
    assert planning.started_at is not None and planning.completed_at is None
    executing = await store.update_run_status(run.id, "executing")
    assert executing.started_at == planning.started_at
    failed = await store.update_run_status(run.id, RunStatus.FAILED, error="tests failed")
    assert failed.completed_at is not None and failed.error == "tests failed"
    assert failed.updated_at is not None and failed.updated_at >= planning.updated_at  # type: ignore[operator]
    resumed = await store.update_run_status(run.id, RunStatus.EXECUTING)
    assert resumed.completed_at is None and resumed.error is None
    git = await store.set_run_git(run.id, "a" * 40, "orchestrator/x", tmp_path / "wt")
    assert (git.base_commit, git.branch, git.worktree) == (
        "a" * 40,
        "orchestrator/x",
        str(tmp_path / "wt"),
    )
    meta = await store.set_run_metadata(run.id, n=2, m=3)
    assert meta.metadata == {"m": 3, "n": 2}
    assert await store.get_run(run.id) == meta
    with pytest.raises(NotFoundError, match="nope"):
        await store.get_run("nope")
    with pytest.raises(NotFoundError):
        await store.update_run_status("nope", RunStatus.FAILED)


async def test_list_runs_newest_first_with_counts(store: StateStore, tmp_path: Path) -> None:
    first = await store.create_run("one", str(tmp_path), {})
    second = await store.create_run("two", str(tmp_path), {})
    phases = await store.save_plan(second.id, PLAN, 3)
    await store.update_phase_status(phases[0].id, PhaseStatus.COMPLETED, commit="b" * 40)
    await store.add_findings(
        second.id,
        phases[0].id,
        None,
        [finding(Severity.MAJOR), finding(Severity.MINOR, "m1"), finding(Severity.MINOR, "m2")],
    )
    resolved = await store.add_finding(second.id, None, None, finding(Severity.MEDIUM, "gone"))
    await store.update_finding_status(resolved.id, FindingStatus.RESOLVED)
    await store.add_finding(second.id, None, None, finding(Severity.MAJOR, "old"), "baseline")
    await store.update_run_status(first.id, RunStatus.COMPLETED)

    listed = await store.list_runs()
    assert [s.run.id for s in listed] == [second.id, first.id]
    top = listed[0]
    assert (top.phases_total, top.phases_completed) == (2, 1)
    assert top.findings == {"major": 1, "medium": 0, "minor": 2}
    assert listed[1].findings == {"major": 0, "medium": 0, "minor": 0}
    assert [s.run.id for s in await store.list_runs(status="completed")] == [first.id]
    assert [s.run.id for s in await store.list_runs(limit=1, offset=1)] == [first.id]
    assert await store.count_runs() == 2
    assert await store.count_runs(RunStatus.PENDING) == 1


async def test_runs_page_sorts_by_worker_cell(store: StateStore, tmp_path: Path) -> None:
    """The worker sort orders by what the runs table's worker cell shows, A to Z or back, and
    puts the runs no worker touched last either way."""
    held = await store.create_run("held by zed", str(tmp_path), {})
    await store.queue_run(held.id)
    assert await store.claim_next("far:1:worker:zed", 600) is not None
    other = await store.create_run("held by bob", str(tmp_path), {})
    await store.queue_run(other.id)
    assert await store.claim_next("far:2:worker:bob", 600) is not None
    waiting = await store.create_run("queued", str(tmp_path), {})
    await store.queue_run(waiting.id)
    done = await store.create_run("driven by amy", str(tmp_path), {})
    await store.set_run_metadata(done.id, **{LAST_WORKER: "far:3:worker:amy", "z": "x:worker:y"})
    await store.update_run_status(done.id, RunStatus.COMPLETED)
    await store.create_run("local", str(tmp_path), {})

    async def cells(descending: bool) -> list[str]:
        page = await store.list_runs_page(sort="worker", descending=descending)
        return [holder_cell(s.run, 12).plain for s in page]

    assert await cells(False) == ["amy", "bob", "queued", "zed", ""]
    assert await cells(True) == ["zed", "queued", "bob", "amy", ""]


async def test_delete_run_removes_everything(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    phase = (await store.save_plan(run.id, PLAN, 3))[0]
    ex = await store.create_execution(phase.id, run.id)
    await store.add_finding(run.id, phase.id, ex.id, finding())
    await store.append_logs([(run.id, None, "info", "hello")])
    await store.delete_run(run.id)
    with pytest.raises(NotFoundError):
        await store.get_phase(phase.id)
    assert await store.count_logs(run.id) == 0
    assert await store.get_findings(run.id) == []


# -- leases and recovery -----------------------------------------------------------------------


async def test_lease_semantics(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    assert await store.acquire_lease(run.id, "A", 60)
    assert await store.acquire_lease(run.id, "A", 60)  # same owner re-acquires
    assert not await store.acquire_lease(run.id, "B", 60)
    assert await store.renew_lease(run.id, "A", 60)
    assert not await store.renew_lease(run.id, "B", 60)
    held = await store.get_run(run.id)
    assert held.lease_owner == "A" and held.lease_expires_at is not None
    await store.release_lease(run.id, "B")  # not the owner: nothing happens
    assert (await store.get_run(run.id)).lease_owner == "A"
    await store.release_lease(run.id, "A")
    assert (await store.get_run(run.id)).lease_owner is None
    assert await store.acquire_lease(run.id, "B", -1)  # already expired when written
    assert await store.acquire_lease(run.id, "C", 60)  # expired lease can be taken
    assert not await store.renew_lease(run.id, "B", 60)
    with pytest.raises(NotFoundError):
        await store.acquire_lease("missing", "A", 60)


async def test_concurrent_acquire_has_one_winner(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    results = await asyncio.gather(*(store.acquire_lease(run.id, f"o{i}", 60) for i in range(10)))
    assert results.count(True) == 1


async def test_recoverable_runs(store: StateStore, tmp_path: Path) -> None:
    leased = await store.create_run("leased", str(tmp_path), {})
    expired = await store.create_run("expired", str(tmp_path), {})
    unleased = await store.create_run("unleased", str(tmp_path), {})
    interrupted = await store.create_run("interrupted", str(tmp_path), {})
    done = await store.create_run("done", str(tmp_path), {})
    await store.update_run_status(leased.id, RunStatus.EXECUTING)
    assert await store.acquire_lease(leased.id, "me", 60)
    await store.update_run_status(expired.id, RunStatus.WAITING)
    assert await store.acquire_lease(expired.id, "dead", -5)
    await store.update_run_status(unleased.id, RunStatus.PLANNING)
    await store.update_run_status(interrupted.id, RunStatus.INTERRUPTED)
    assert await store.acquire_lease(interrupted.id, "me", 60)
    await store.update_run_status(done.id, RunStatus.COMPLETED)
    ids = {r.id for r in await store.get_recoverable_runs()}
    assert ids == {expired.id, unleased.id, interrupted.id}


async def test_cancel_flag(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    assert not await store.cancel_requested(run.id)
    await store.request_cancel(run.id)
    assert await store.cancel_requested(run.id)
    assert (await store.get_run(run.id)).cancel_requested
    with pytest.raises(NotFoundError):
        await store.request_cancel("missing")


# -- phases and executions ---------------------------------------------------------------------


async def test_save_plan_is_ordered_and_idempotent(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    phases = await store.save_plan(run.id, PLAN, 3)
    assert [p.plan_id for p in phases] == ["phase-001", "phase-002"]
    assert [p.seq for p in phases] == [0, 1]
    second = phases[1]
    assert second.dependencies == ["phase-001"] and second.risk_level == "high"
    assert second.verification_criteria == ["cli works", "lint clean"]
    assert second.attempts == 0 and second.max_attempts == 3
    assert second.status is PhaseStatus.PENDING and second.id.startswith("p")
    again = await store.save_plan(run.id, [{"id": "other", "name": "x"}], 5)
    assert again == phases
    assert await store.get_phases_for_run(run.id) == phases


async def test_phase_status_commit_and_git(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    phase = (await store.save_plan(run.id, PLAN, 3))[0]
    started = await store.update_phase_status(phase.id, PhaseStatus.IN_PROGRESS)
    assert started.started_at is not None and started.completed_at is None
    failed = await store.update_phase_status(phase.id, PhaseStatus.FAILED, error="boom")
    assert failed.completed_at is not None and failed.error == "boom"
    retry = await store.update_phase_status(phase.id, "in_progress")
    assert retry.started_at == started.started_at and retry.completed_at is None
    done = await store.update_phase_status(phase.id, PhaseStatus.COMPLETED, commit="c" * 40)
    assert done.commit == "c" * 40 and done.error is None
    later = await store.update_phase_status(phase.id, PhaseStatus.COMPLETED)
    assert later.commit == "c" * 40
    git = await store.update_phase_status(
        phase.id, "in_progress", base_commit="d" * 40, branch="b1"
    )
    git = await store.update_phase_status(
        phase.id, "in_progress", base_commit="e" * 40, worktree=tmp_path / "wt"
    )  # git fields are kept once set (resume reuses the first base)
    assert (git.base_commit, git.branch, git.worktree) == ("d" * 40, "b1", str(tmp_path / "wt"))
    assert await store.get_phase(phase.id) == git
    with pytest.raises(NotFoundError):
        await store.update_phase_status("missing", PhaseStatus.FAILED)


async def test_a_transition_stores_its_lines_with_it_and_a_refused_one_neither(
    store: StateStore, tmp_path: Path
) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    phase = (await store.save_plan(run.id, PLAN, 3))[0]
    lines = [(run.id, phase.id, "info", f"line {i}") for i in range(3)]
    moved, records = await store.move_phase(
        phase.id, PhaseStatus.IN_PROGRESS, allowed_from=["pending"], lines=lines
    )
    assert moved.status is PhaseStatus.IN_PROGRESS
    assert records == await store.get_logs(run.id)  # the seqs handed back are the stored ones
    assert [r.message for r in records] == ["line 0", "line 1", "line 2"]
    with pytest.raises(TransitionError, match="is in_progress; it cannot become completed"):
        await store.move_phase(
            phase.id,
            PhaseStatus.COMPLETED,
            allowed_from=["pending"],
            commit="c" * 40,
            lines=[(run.id, phase.id, "info", "never stored")],
        )
    assert await store.get_phase(phase.id) == moved
    assert await store.get_logs(run.id) == records
    # The writer is free again: the next write goes through.
    assert (await store.append_logs([(run.id, None, "info", "after")]))[0].seq > records[-1].seq


async def test_a_statement_that_rides_with_the_next_one_fails_the_whole_write(
    store: StateStore, tmp_path: Path
) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    with pytest.raises(StateError, match="write failed on"):
        async with store._write() as db:
            await store._soon(db, "UPDATE runs SET task = ? WHERE id = ?", ("changed", run.id))
            await store._soon(db, "INSERT INTO runs (id) VALUES (?)", (run.id,))  # a duplicate
            await db.execute_fetchall("SELECT 1")
    assert (await store.get_run(run.id)).task == "t"  # the first statement was rolled back too
    rows = await store._write_batch(
        [
            ("UPDATE runs SET task = ? WHERE id = ?", ("kept", run.id)),
            ("SELECT task FROM runs WHERE id = ?", (run.id,)),
        ]
    )
    assert [tuple(r) for r in rows] == [("kept",)] and (await store.get_run(run.id)).task == "kept"


async def test_execution_attempt_numbering(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    one, two = await store.save_plan(run.id, PLAN, 3)
    e1 = await store.create_execution(one.id, run.id)
    assert (e1.attempt, e1.status, e1.completed_at) == (1, ExecutionStatus.RUNNING, None)
    failed = await store.fail_execution(e1.id, "no edits", output="raw", context="ctx")
    assert (failed.status, failed.error, failed.output, failed.context) == (
        ExecutionStatus.FAILED,
        "no edits",
        "raw",
        "ctx",
    )
    e2 = await store.create_execution(one.id, run.id)
    assert e2.attempt == 2
    ok = await store.complete_execution(e2.id, "done")
    assert ok.status is ExecutionStatus.SUCCEEDED and ok.completed_at is not None
    e5 = await store.create_execution(one.id, run.id, attempt=5)
    assert e5.attempt == 5 and (await store.create_execution(one.id, run.id)).attempt == 6
    assert (await store.get_phase(one.id)).attempts == 6
    other = await store.create_execution(two.id, run.id)
    assert other.attempt == 1
    assert [e.attempt for e in await store.get_executions(run.id, phase_id=one.id)] == [1, 2, 5, 6]
    assert len(await store.get_executions(run.id)) == 5
    assert await store.get_execution(other.id) == other
    with pytest.raises(NotFoundError):
        await store.create_execution("missing", run.id)
    with pytest.raises(StateError, match="belongs to run"):
        await store.create_execution(one.id, "r0000000000")


async def test_fail_running_executions_on_resume(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    one, two = await store.save_plan(run.id, PLAN, 3)
    done = await store.create_execution(one.id, run.id)
    await store.complete_execution(done.id, "ok")
    await store.create_execution(one.id, run.id)
    await store.create_execution(two.id, run.id)
    assert await store.fail_running_executions(run.id, "interrupted") == 2
    statuses = [e.status for e in await store.get_executions(run.id)]
    assert statuses == [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.FAILED]
    assert await store.fail_running_executions(run.id, "again") == 0


# -- findings ----------------------------------------------------------------------------------


async def test_findings_crud_fingerprint_and_summary(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    phase = (await store.save_plan(run.id, PLAN, 3))[0]
    ex = await store.create_execution(phase.id, run.id)
    f = await store.add_finding(
        run.id,
        phase.id,
        ex.id,
        finding(
            Severity.MAJOR,
            "E501 too long",
            rule="E501",
            path="a.py",
            line=3,
            column=7,
            category=Category.LINT,
            tool="ruff",
        ),
    )
    raw = "ruff|E501|a.py|E501 too long"
    assert f.fingerprint == hashlib.sha1(raw.encode()).hexdigest()[:16]
    assert (f.location, f.column, f.status, f.category) == ("a.py:3", 7, FindingStatus.NEW, "lint")
    given = await store.add_finding(run.id, None, None, finding(fingerprint="fixed"))
    assert given.fingerprint == "fixed" and given.location is None
    batch = await store.add_findings(
        run.id,
        phase.id,
        ex.id,
        [finding(Severity.MEDIUM, "x"), finding(Severity.MINOR, "y")],
        status=FindingStatus.OPEN,
    )
    await store.add_finding(
        run.id, None, None, finding(Severity.MAJOR, "b"), FindingStatus.BASELINE
    )
    resolved = await store.update_finding_status(batch[0].id, FindingStatus.RESOLVED)
    assert resolved.status is FindingStatus.RESOLVED and resolved.resolved_at is not None
    stored = await store._fetch("SELECT resolved FROM findings WHERE id=?", (resolved.id,))
    assert stored[0][0] == 1 and stored[0]["resolved"] == 1
    reopened = await store.update_finding_status(batch[0].id, "open")
    assert reopened.resolved_at is None
    await store.update_finding_status(batch[0].id, FindingStatus.RESOLVED)

    summary = await store.get_findings_summary(run.id)
    assert summary == {
        "major": 2,
        "medium": 0,
        "minor": 1,
        "total_open": 3,
        "by_category": {"build": 0, "test": 2, "lint": 1, "security": 0, "custom": 0},
        "baseline": 1,
    }
    assert len(await store.get_findings(run.id)) == 5
    assert len(await store.get_findings(run.id, phase_id=phase.id)) == 3
    assert [x.id for x in await store.get_findings(run.id, status="baseline")] != []
    assert [x.id for x in await store.get_findings(run.id, status=FindingStatus.NEW)] == [
        f.id,
        given.id,
    ]
    with pytest.raises(NotFoundError):
        await store.add_finding("missing", None, None, finding())
    with pytest.raises(NotFoundError):
        await store.update_finding_status("missing", FindingStatus.OPEN)


# -- interventions -----------------------------------------------------------------------------


async def test_intervention_first_answer_wins(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    item = await store.create_intervention(
        run.id,
        None,
        InterventionKind.RISK,
        "phase-002 is high risk",
        "approve runs it",
        payload={"plan_id": "phase-002"},
    )
    assert item.status is InterventionStatus.PENDING and item.payload == {"plan_id": "phase-002"}
    other = await store.create_intervention(run.id, None, "budget", "tokens", "approve continues")
    assert [i.id for i in await store.list_interventions(pending_only=True)] == [item.id, other.id]
    done = await store.resolve_intervention(item.id, approve=True, note="fine")
    assert (done.status, done.note) == (InterventionStatus.APPROVED, "fine")
    assert done.resolved_at is not None
    with pytest.raises(AlreadyAnsweredError, match=f"intervention {item.id} was already approved"):
        await store.resolve_intervention(item.id, approve=False)
    assert (await store.get_intervention(item.id)).status is InterventionStatus.APPROVED
    results = await asyncio.gather(
        store.resolve_intervention(other.id, approve=False),
        store.resolve_intervention(other.id, approve=True),
        return_exceptions=True,
    )
    assert sum(isinstance(r, AlreadyAnsweredError) for r in results) == 1
    assert [i.id for i in await store.list_interventions(run_id=run.id)] == [item.id, other.id]
    assert await store.list_interventions(pending_only=True) == []
    with pytest.raises(NotFoundError):
        await store.resolve_intervention("missing", approve=True)


# -- logs, artifacts, usage, cache -------------------------------------------------------------


async def test_logs_append_and_query(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    other = await store.create_run("u", str(tmp_path), {})
    records = await store.append_logs(
        [
            (run.id, None, "info", "starting"),
            (run.id, "p1", "debug", "detail 100%_done"),
            (other.id, None, "info", "elsewhere"),
            (run.id, None, "error", "Boom happened", "2026-01-01T00:00:00.000000Z"),
            (run.id, None, "warning", "careful"),
        ]
    )
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + 5))
    assert records[3].ts == "2026-01-01T00:00:00.000000Z"
    logs = await store.get_logs(run.id)
    assert [r.message for r in logs] == ["starting", "detail 100%_done", "Boom happened", "careful"]
    assert [r.seq for r in logs] == [records[i].seq for i in (0, 1, 3, 4)]
    assert await store.get_logs(run.id, after_seq=records[1].seq, limit=1) == [records[3]]
    assert [r.level for r in await store.get_logs(run.id, level="warning")] == ["error", "warning"]
    assert [r.message for r in await store.get_logs(run.id, contains="boom")] == ["Boom happened"]
    assert [r.message for r in await store.get_logs(run.id, contains="%_")] == ["detail 100%_done"]
    assert await store.get_logs(run.id, contains="_x") == []
    assert await store.count_logs(run.id) == 4 and await store.count_logs(other.id) == 1
    assert await store.append_logs([]) == []


async def test_artifacts(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    f = tmp_path / "summary.md"
    f.write_bytes(b"# hello\n")
    art = await store.add_artifact(run.id, None, "summary.md", f, "summary")
    assert (art.size, art.hash, art.path) == (8, hashlib.sha256(b"# hello\n").hexdigest(), str(f))
    assert await store.get_artifacts(run.id) == [art]
    # Writing the same file again (a resumed run rewrites its summary) replaces the row.
    f.write_bytes(b"# hello again\n")
    again = await store.add_artifact(run.id, None, "summary.md", f, "summary")
    assert await store.get_artifacts(run.id) == [again]
    assert again.hash == hashlib.sha256(b"# hello again\n").hexdigest()
    with pytest.raises(StateError, match="cannot read artifact"):
        await store.add_artifact(run.id, None, "x", tmp_path / "missing", "log")
    with pytest.raises(NotFoundError, match="no run with id 'r-gone'"):
        await store.add_artifact("r-gone", None, "x", f, "log")
    assert await store.get_artifacts("r-gone") == []


async def test_usage_and_cache(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("t", str(tmp_path), {})
    await store.record_usage(run.id, None, None, "planner", "ollama", "m1", 100, 20, 12.5, False)
    await store.record_usage(run.id, None, None, "executor", "ollama", "m2", 50, 5, 3.0, False)
    await store.record_usage(run.id, None, None, "executor", "ollama", "m2", 10, 1, 0.0, True)
    assert await store.usage_by_role(run.id) == {
        "executor": {"prompt_tokens": 60, "completion_tokens": 6, "calls": 2},
        "planner": {"prompt_tokens": 100, "completion_tokens": 20, "calls": 1},
    }
    usage = await store.get_usage(run.id)
    assert [(u.role, u.model, u.calls) for u in usage] == [
        ("executor", "m2", 2),
        ("planner", "m1", 1),
    ]
    assert await store.cache_get("k") is None
    await store.cache_put("k", '{"a": 1}')
    await store.cache_put("k", '{"a": 2}')
    assert await store.cache_get("k") == '{"a": 2}'


# -- concurrency across processes --------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from core.state.store import StateStore

    async def main(path: str, n: int, worker: int, url: str | None) -> None:
        store = await StateStore.open(Path(path), url=url)
        run = await store.create_run(f"worker {worker}", "/tmp", {"worker": worker})
        for i in range(n - 1):
            if i % 2:
                await store.append_logs([(run.id, None, "info", f"{worker}:{i}")] * 5)
            else:
                await store.set_run_metadata(run.id, last=i)
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), (sys.argv[4:] or [None])[0]))
    """
)


async def test_eight_processes_write_concurrently_without_lock_errors(
    tmp_path: Path, backend: tuple[Path, str | None]
) -> None:
    path, url = backend
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(path),
            "200",
            str(worker),
            *([url] if url else []),
            cwd=ROOT,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        for worker in range(8)
    ]
    results = await asyncio.gather(*(p.communicate() for p in procs))
    errors = [err.decode() for (_, err), p in zip(results, procs, strict=True) if p.returncode]
    assert errors == []
    async with await StateStore.open(path, url=url) as store:
        assert await store.count_runs() == 8
        for summary in await store.list_runs():
            assert await store.count_logs(summary.run.id) == 99 * 5
            assert summary.run.metadata == {"last": 198}


async def test_cancelled_writes_never_leave_a_transaction_open(
    backend: tuple[Path, str | None],
) -> None:
    path, url = backend
    async with await StateStore.open(path, url=url) as store:
        run = await store.create_run("t", str(path.parent), {})
        # A plain write, one whose COMMIT rides with its last INSERT, and a one-hop batch.
        writes = [
            lambda i: store.set_run_metadata(run.id, i=i),
            lambda i: store.append_logs([(run.id, None, "info", f"line {i}")]),
            lambda i: store.record_usage(
                run.id, None, None, "executor", "p", "m", i, 1, 1.0, False
            ),
        ]
        for i in range(120):
            task = asyncio.create_task(writes[i % 3](i))
            for _ in range(i % 12):
                await asyncio.sleep(0)  # cancel at a different await point each time
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # The writer is usable and no lock is held: another connection can write at once.
        await store.set_run_metadata(run.id, done=True)
        if url is None:
            other = sqlite3.connect(path, timeout=0)
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            other.close()
        else:  # the advisory write lock is free: another session takes it without waiting
            async with await StateStore.open(path, url=url) as again:
                taken = await again._fetch("SELECT pg_try_advisory_lock(1869771624)")
                assert taken[0][0] is True
        assert (await store.get_run(run.id)).metadata["done"] is True


async def test_seed_api_create_phase_recover_run_and_export(tmp_path: Path) -> None:
    import json

    from core.errors import StateError

    async with await StateStore.open(tmp_path / "seed.db") as store:
        run = await store.create_run("task", str(tmp_path), {})
        await store.save_plan(run.id, [{"id": "phase-001", "name": "first"}], max_attempts=2)
        added = await store.create_phase(
            run.id, {"id": "phase-002", "name": "second", "dependencies": ["phase-001"]}
        )
        assert (added.seq, added.dependencies, added.max_attempts) == (1, ["phase-001"], 3)
        with pytest.raises(StateError, match="phase-002"):
            await store.create_phase(run.id, {"id": "phase-002"})

        await store.update_run_status(run.id, "executing")
        assert await store.acquire_lease(run.id, "host:1:x", 60)
        recovered = await store.recover_run(run.id)
        assert recovered.status == "interrupted" and recovered.lease_owner is None
        assert await store.acquire_lease(run.id, "host:2:y", 60), "the dead owner's lease is gone"

        doc = json.loads(export_text(await run_document(store, run.id), "json"))
        assert [p["plan_id"] for p in doc["phases"]] == ["phase-001", "phase-002"]
        assert "phase-002" in export_text(await run_document(store, run.id))
