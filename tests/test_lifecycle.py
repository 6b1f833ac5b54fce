"""Every way out of a run ends in a true state: the lifecycle's tables, foreign errors, cancel of a
waiting run, kill -9 of a waiting run, and a plugin executor that raises."""

from __future__ import annotations

import ast
import errno
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.demo.prepare import cassette_path, prepare_demo_repo
from core.errors import DiskFullError, TransitionError, WithdrawnError
from core.final_word import final_word
from core.lifecycle import Lifecycle
from core.records import (
    ExecutionStatus,
    InterventionKind,
    InterventionStatus,
    PhaseStatus,
    RunStatus,
)
from core.state.store import StateStore
from tests.cassette import new_file, phase, write_cassette
from tests.clirun import cli, cli_json, spawn
from tests.conftest import make_repo
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def assert_true_state(home: Path, run_id: str) -> None:
    """A stopped run has no phase in progress and no attempt running; a finished one no open ask."""
    with sqlite3.connect(home / "orchestrator.db") as db:
        status = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        in_progress = db.execute(
            "SELECT COUNT(*) FROM phases WHERE run_id = ? AND status = 'in_progress'", (run_id,)
        ).fetchone()[0]
        running = db.execute(
            "SELECT COUNT(*) FROM executions WHERE run_id = ? AND status = 'running'", (run_id,)
        ).fetchone()[0]
        pending = db.execute(
            "SELECT COUNT(*) FROM manual_interventions WHERE run_id = ? AND status = 'pending'",
            (run_id,),
        ).fetchone()[0]
    assert status in ("completed", "failed", "cancelled", "interrupted"), status
    assert (in_progress, running) == (0, 0), (status, in_progress, running)
    if status != "interrupted":
        assert pending == 0, f"a {status} run keeps {pending} pending intervention(s)"


# ---- the lifecycle in process ------------------------------------------------------------------


@pytest.fixture
async def store(backend: tuple[Path, str | None]) -> AsyncIterator[StateStore]:
    """A fresh store on each backend (SQLite file, then PostgreSQL: tests/pg_support.py)."""
    path, url = backend
    async with await StateStore.open(path, url=url) as opened:
        yield opened


async def _seeded(store: StateStore, tmp_path: Path) -> tuple[str, str, str, str]:
    """A run executing a phase with a running attempt and a pending question."""
    run = await store.create_run("t", str(tmp_path), {})
    first, _ = await store.save_plan(run.id, [phase("a"), phase("b", ["a"])], 3)
    await store.update_run_status(run.id, RunStatus.EXECUTING)
    await store.update_phase_status(first.id, PhaseStatus.IN_PROGRESS)
    execution = await store.create_execution(first.id, run.id)
    ask = await store.create_intervention(run.id, first.id, InterventionKind.RISK, "why", "what")
    return run.id, first.id, execution.id, ask.id


async def test_a_foreign_error_fails_the_run_and_closes_everything(
    store: StateStore, tmp_path: Path
) -> None:
    from core.bus import EventBus
    from core.journal import Journal

    journal = Journal(store, EventBus())
    lifecycle = Lifecycle(store, journal)
    run_id, phase_id, execution_id, ask_id = await _seeded(store, tmp_path)
    run = await lifecycle.end_run(run_id, KeyError("chunk 17"))
    assert run.status is RunStatus.FAILED and run.error == "KeyError: 'chunk 17'"
    [execution] = await store.get_executions(run_id)
    assert (
        execution.id == execution_id
        and execution.status is ExecutionStatus.FAILED
        and "chunk 17" in (execution.error or "")
    )
    assert (await store.get_phase(phase_id)).status is PhaseStatus.FAILED
    item = await store.get_intervention(ask_id)
    assert item.status is InterventionStatus.WITHDRAWN
    with pytest.raises(WithdrawnError, match="withdrawn"):
        await lifecycle.intervention_to(ask_id, InterventionStatus.APPROVED)
    with pytest.raises(TransitionError, match="cannot become executing"):
        await lifecycle.run_to(run_id, RunStatus.EXECUTING)
    logs = [r.message for r in await store.get_logs(run_id)]
    assert logs[-1] == f"run failed: {run.error}" and f"intervention {ask_id} withdrawn" in logs
    word = final_word(run)
    assert word.exit_code == 1 and word.next_step and "resume" in word.next_step


async def test_a_full_disk_interrupts_the_run_and_keeps_its_questions(
    store: StateStore, tmp_path: Path
) -> None:
    from core.bus import EventBus
    from core.journal import Journal

    lifecycle = Lifecycle(store, Journal(store, EventBus()))
    run_id, phase_id, _, ask_id = await _seeded(store, tmp_path)
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "home"))
    run = await lifecycle.end_run(run_id, full)
    assert run.status is RunStatus.INTERRUPTED
    assert f"free space in {tmp_path / 'home'}, then `orchestrator resume {run_id}`" in (
        run.error or ""
    )
    assert run.metadata["outcome"]["error_type"] == DiskFullError.__name__
    assert (await store.get_phase(phase_id)).status is PhaseStatus.PENDING
    assert (await store.get_intervention(ask_id)).status is InterventionStatus.PENDING
    answered = await lifecycle.intervention_to(ask_id, InterventionStatus.APPROVED, note="ok")
    assert answered.status is InterventionStatus.APPROVED


async def test_a_bad_plan_does_not_suggest_resume(store: StateStore, tmp_path: Path) -> None:
    from core.bus import EventBus
    from core.errors import PlanError
    from core.journal import Journal

    lifecycle = Lifecycle(store, Journal(store, EventBus()))
    run = await store.create_run("t", str(tmp_path), {})
    await store.update_run_status(run.id, RunStatus.PLANNING)
    ended = await lifecycle.end_run(run.id, PlanError("the answer was not a plan"))
    word = final_word(ended)
    assert ended.status is RunStatus.FAILED and not word.resumable
    assert word.next_step and "orchestrator resume" not in word.next_step


def test_only_the_lifecycle_calls_the_status_changing_store_methods() -> None:
    changing = {
        "move_run",
        "move_phase",
        "move_execution",
        "move_intervention",
        "close_run",
        "update_run_status",
        "update_phase_status",
        "complete_execution",
        "fail_execution",
        "fail_running_executions",
        "resolve_intervention",
        "recover_run",
    }
    callers = []
    for package in ("core", "tui", "config", "rag", "verify"):
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "core/lifecycle.py" or rel.startswith("core/state/"):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in changing
                    and not (
                        isinstance(node.value, ast.Attribute | ast.Name)
                        and getattr(node.value, "attr", getattr(node.value, "id", "")) == "engine"
                    )
                ):
                    callers.append(f"{rel}:{node.lineno} {node.attr}")
    assert callers == []


# ---- real processes ----------------------------------------------------------------------------


def _waiting_demo(home: Path) -> tuple[object, str, str]:
    """Start the demo headless (it asks a risk approval) and wait for its question."""
    proc = spawn(home, "demo", "--headless")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    asks = wait_until(
        lambda: (
            proc.poll() is not None or cli_json(home, "interventions", "--run", run_id, "--pending")
        ),
        what=f"the demo run {run_id} to ask for an approval",
        timeout=180,
    )
    assert isinstance(asks, list), f"the demo ended before asking: {proc.communicate()}"
    return proc, run_id, asks[0]["id"]


def test_cancel_of_a_waiting_run_withdraws_its_question(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, run_id, ask_id = _waiting_demo(home)
    assert cli(home, "cancel", run_id, check=True).returncode == 0
    out, err = proc.communicate(timeout=120)  # type: ignore[attr-defined]
    assert proc.returncode == 1, out + err  # type: ignore[attr-defined]
    assert f"run {run_id} cancelled" in err and "cannot be resumed" in err
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "cancelled"
    assert [i["status"] for i in doc["interventions"]] == ["withdrawn"]
    answer = cli(home, "approve", ask_id)
    assert answer.returncode == 1 and "withdrawn" in answer.stderr
    assert cli_json(home, "interventions", "--pending") == []
    assert_true_state(home, run_id)


def test_kill_9_of_a_waiting_run_reads_interrupted_and_resume_continues(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, run_id, ask_id = _waiting_demo(home)
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    proc.communicate(timeout=60)  # type: ignore[attr-defined]
    [listed] = cli_json(home, "runs")
    assert listed["id"] == run_id and listed["status"] == "interrupted"
    assert [r["id"] for r in cli_json(home, "runs", "--status", "interrupted")] == [run_id]
    assert cli_json(home, "runs", "--status", "waiting") == []
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "interrupted" and "resume" in (doc["error"] or "")
    assert "in_progress" not in [p["status"] for p in doc["phases"]]
    assert "running" not in [e["status"] for e in doc["executions"]]
    approved = cli(home, "approve", ask_id, "--note", "after the crash", check=True)
    assert "approved" in approved.stdout
    resumed = cli(home, "resume", run_id, "--headless", "--yes", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    assert [i["note"] for i in doc["interventions"]] == ["after the crash"]
    assert_true_state(home, run_id)


PLUGIN = """
from core.executors.base import AttemptResult


class Boom:
    name = "boom"

    async def execute(self, job, log):
        raise ZeroDivisionError("the plugin divided by zero")


def factory(config, llm, model):
    return Boom()
"""


def test_a_plugin_executor_that_raises_fails_the_run_with_its_error(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    dist = plugins / "boom_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (plugins / "boom_plugin.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[orchestrator.executors]\nboom = boom_plugin:factory\n")
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001")], {("phase-001", 1): new_file("a.txt", "a")}
    )
    proc = cli(
        home,
        *("run", "task", "--repo", str(repo), "--headless", "--yes"),
        *("--provider", "replay", "--replay", str(cassette)),
        PYTHONPATH=f"{ROOT}{os.pathsep}{plugins}",
        ORCHESTRATOR__EXECUTION__EXECUTOR="boom",
        timeout=240,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ZeroDivisionError: the plugin divided by zero" in proc.stderr
    assert "resume it with: orchestrator resume" in proc.stderr
    [run] = cli_json(home, "runs")
    assert run["status"] == "failed"
    assert run["error"] == "ZeroDivisionError: the plugin divided by zero"
    assert_true_state(home, run["id"])


def test_a_foreign_error_from_the_index_ends_the_run_truthfully(tmp_path: Path) -> None:
    from rag.layout import index_folder

    home = tmp_path / "home"
    repo = prepare_demo_repo(tmp_path / "demo")
    # A file where the repository's index folder belongs: indexing fails with an OS error.
    blocker = index_folder(home / "indexes", repo.resolve(), "x").parent
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    proc = cli(
        home,
        *("run", "Add input validation", "--repo", str(repo), "--headless", "--yes"),
        *("--provider", "replay", "--replay", str(cassette_path())),
        timeout=240,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [run] = cli_json(home, "runs")
    assert run["status"] == "failed" and run["error"], run
    assert run["error"] in proc.stderr
    assert_true_state(home, run["id"])


async def test_reads_present_a_run_whose_process_died_as_interrupted(
    store: StateStore, tmp_path: Path
) -> None:
    import asyncio
    import socket
    import sys

    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()
    owner = f"{socket.gethostname()}:{dead.pid}:1"
    never_started = await store.create_run("stored only", str(tmp_path), {})
    lost_id, phase_id, execution_id, ask_id = await _seeded(store, tmp_path)
    # On PostgreSQL a lease held elsewhere can only expire (core/state/dialect.py: owner_gone).
    seconds = 600 if store.dialect == "sqlite" else -1
    assert await store.acquire_lease(lost_id, owner, seconds)
    assert await store.acquire_lease(never_started.id, owner, seconds)

    lost = await store.get_run(lost_id)
    assert lost.status is RunStatus.INTERRUPTED and lost.lost and lost.completed_at
    assert "resume" in (lost.error or "")
    assert (await store.get_run(never_started.id)).status is RunStatus.PENDING
    assert (await store.get_phase(phase_id)).status is PhaseStatus.PENDING
    [execution] = await store.get_executions(lost_id)
    assert execution.id == execution_id and execution.status is ExecutionStatus.FAILED
    assert [s.run.id for s in await store.list_runs(status="interrupted")] == [lost_id]
    assert await store.count_runs("executing") == 0
    assert await store.count_runs_matching(status="interrupted") == 1
    page = await store.list_runs_page(status="interrupted")
    assert [s.run.id for s in page] == [lost_id]
    # reads wrote nothing: the stored row still says executing until a writer records it
    stored = await store._fetch("SELECT status FROM runs WHERE id = ?", (lost_id,))
    assert stored[0]["status"] == "executing"

    from core.bus import EventBus
    from core.journal import Journal

    lifecycle = Lifecycle(store, Journal(store, EventBus()))
    recorded = await lifecycle.record_lost(lost_id, owner)
    assert recorded.status is RunStatus.INTERRUPTED and not recorded.lost
    assert recorded.lease_owner is None
    assert (await store.get_intervention(ask_id)).status is InterventionStatus.PENDING
    with pytest.raises(TransitionError):  # the owner no longer holds it: nothing to record
        await lifecycle.record_lost(lost_id, owner)


async def test_a_run_another_process_ended_first_keeps_that_end(tmp_path: Path) -> None:
    """`cancel` ends a run itself when its lease looks expired (a starved process misses its
    heartbeats); the driver, alive after all, then keeps that end and says so instead of failing."""
    import asyncio
    import os

    from config.loader import load_config
    from config.paths import Paths
    from core.engine import Engine
    from core.errors import RunCancelled
    from tests.waiting import pending_asks

    paths = Paths(tmp_path / "home")
    repo = prepare_demo_repo(tmp_path / "demo")
    cli_layer = {"llm.provider": "replay", "llm.replay": str(cassette_path())}
    async with await Engine.open(paths) as driving, await Engine.open(paths) as other:
        loaded = load_config(paths, repo=repo, env=os.environ, cli=cli_layer)
        run = await driving.create_run("Add the demo feature", repo, loaded)
        task = asyncio.create_task(driving.execute_run(run.id))
        await pending_asks(driving, run.id, task)
        await other.store.request_cancel(run.id)
        await other.lifecycle.end_run(run.id, RunCancelled())  # as `cancel` does for a lost run
        ended = await asyncio.wait_for(task, timeout=120)
        assert ended.status is RunStatus.CANCELLED
        assert ended.lease_owner is None  # released: nothing claims to drive it
        logs = [r.message for r in await driving.logs(run.id)]
        assert any("already cancelled by another process" in m for m in logs), logs[-5:]
    assert_true_state(paths.home, run.id)  # no phase in progress, no attempt running, no ask
