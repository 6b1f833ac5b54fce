"""Queue and workers: `submit` stores a queued run, `worker` claims and drives it; claiming is
one statement, a lease carries a fencing token, and a taken-over writer writes nothing more."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.bus import EventBus
from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.errors import LeaseLostError
from core.journal import Journal
from core.lifecycle import Lifecycle
from core.records import Category, FindingIn, PhaseStatus, RunStatus, Severity
from core.state.claims import claim_sql, worker_owner_like
from core.state.fencing import fenced
from core.state.store import StateStore
from core.timeutil import utcnow
from tests.clirun import assert_one_commit_per_phase, cli, cli_json, spawn
from tests.waiting import wait_until

PLAN = [
    {
        "id": "phase-001",
        "name": "Add parser",
        "description": "Write the parser",
        "dependencies": [],
        "estimated_complexity": "low",
        "risk_level": "low",
        "verification_criteria": ["tests pass"],
    }
]
HOST = socket.gethostname()
FAST = {
    "ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "2",
    "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.5",
}


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def _reap(*procs: subprocess.Popen[str]) -> None:
    """Kill what a failed test left running (a worker that did not stop in time)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _rows(home: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    with sqlite3.connect(home / "orchestrator.db") as db:
        db.row_factory = sqlite3.Row
        return list(db.execute(sql, params))


# ---- claiming (the store) --------------------------------------------------------------------


async def test_claims_take_the_oldest_free_run_once_and_a_worker_takes_its_own_back(
    tmp_path: Path, backend: tuple[Path, str | None]
) -> None:
    path, url = backend
    async with (
        await StateStore.open(path, url=url) as one,
        await StateStore.open(path, url=url) as two,
    ):
        done = await one.create_run("finished", str(tmp_path), {})
        await one.update_run_status(done.id, RunStatus.COMPLETED)
        await one.queue_run(done.id)
        await one.create_run("not submitted", str(tmp_path), {})
        queued = [await one.create_run(f"task {i}", str(tmp_path), {}) for i in range(5)]
        for run in queued:
            await one.queue_run(run.id)

        # Two "machines" claim at the same time: every queued run is claimed exactly once.
        claims = await asyncio.gather(
            *((one if i % 2 else two).claim_next(f"{HOST}:{i}:worker:w{i}", 60) for i in range(8))
        )
        got = [c for c in claims if c is not None]
        assert sorted(c.run.id for c in got) == sorted(r.id for r in queued)
        assert {c.token for c in got} == {1}

        # A crashed worker's run: its own id takes it back at once, another waits for expiry.
        dead = f"{HOST}:{_dead_pid()}:worker:w-1"
        victim = got[0].run
        await one.release_lease(victim.id, victim.lease_owner or "")
        assert await one.acquire_lease(victim.id, dead, 60) == 2
        assert await two.claim_next(f"{HOST}:1:worker:other", 60) is None
        back = await two.take_back(f"{HOST}:2:worker:w-1", worker_owner_like(HOST, "w-1"), 60)
        assert [(c.run.id, c.token, c.previous_owner) for c in back] == [(victim.id, 3, dead)]
        assert back[0].run.lease_owner == f"{HOST}:2:worker:w-1"

        # An expired lease is free for anyone, with a new token.
        assert await one.acquire_lease(victim.id, f"{HOST}:2:worker:w-1", -1) == 3
        later = await one.claim_next(f"{HOST}:3:worker:other", 60)
        assert later is not None and (later.run.id, later.token) == (victim.id, 4)
    assert "FOR UPDATE SKIP LOCKED" in claim_sql("postgresql")
    assert "SKIP LOCKED" not in claim_sql("sqlite")


# ---- fencing ---------------------------------------------------------------------------------


async def test_a_driver_whose_lease_was_taken_over_writes_nothing_more(
    tmp_path: Path, backend: tuple[Path, str | None]
) -> None:
    path, url = backend
    async with await StateStore.open(path, url=url) as a, await StateStore.open(path, url=url) as b:
        run = await a.create_run("task", str(tmp_path), {})
        phase = (await a.save_plan(run.id, PLAN, 3))[0]
        await a.queue_run(run.id)
        token_a = await a.acquire_lease(run.id, f"{HOST}:1:worker:a", -1)  # a pauses, it expires
        assert token_a == 1
        claim = await b.claim_next(f"{HOST}:2:worker:b", 60)
        assert claim is not None and claim.token == 2

        journal_a, journal_b = Journal(a, EventBus()), Journal(b, EventBus())
        stale, fresh = Lifecycle(a, journal_a), Lifecycle(b, journal_b)
        with fenced(run.id, token_a):
            journal_a.log(run.id, None, "info", "written by the stale driver")
            with pytest.raises(LeaseLostError, match=r"token 1\) was taken over \(token 2 held by"):
                await stale.run_to(run.id, RunStatus.EXECUTING)
            with pytest.raises(LeaseLostError):
                await stale.start_execution(phase)
            with pytest.raises(LeaseLostError):
                await stale.phase_to(phase, PhaseStatus.COMPLETED, commit="c" * 40)
            finding = FindingIn(Category.TEST, Severity.MAJOR, "pytest", "stale finding")
            with pytest.raises(LeaseLostError):
                await a.add_findings(run.id, phase.id, None, [finding])
            with pytest.raises(LeaseLostError):
                await a.ensure_fence()  # what the phase runner asks before a git commit or merge
            await journal_a.flush()  # the stale line is dropped where it is inserted
        with fenced(run.id, claim.token):
            journal_b.log(run.id, None, "info", "written by the new owner")
            await fresh.run_to(run.id, RunStatus.EXECUTING)
            await journal_b.flush()

        stored = await b.get_run(run.id)
        assert stored.status is RunStatus.EXECUTING
        assert stored.lease_owner == f"{HOST}:2:worker:b"
        assert await b.get_executions(run.id) == []
        assert await b.get_findings(run.id) == []
        assert (await b.get_phase(phase.id)).commit is None
        messages = [r.message for r in await b.get_logs(run.id)]
        assert "written by the new owner" in messages
        assert "written by the stale driver" not in messages


async def test_recording_a_lost_run_fences_off_the_process_that_drove_it(
    tmp_path: Path, backend: tuple[Path, str | None]
) -> None:
    path, url = backend
    async with await StateStore.open(path, url=url) as a, await StateStore.open(path, url=url) as b:
        run = await a.create_run("task", str(tmp_path), {})
        owner = f"{HOST}:1:x"
        token = await a.acquire_lease(run.id, owner, -1)  # a starved driver: its lease expired
        assert token == 1
        with fenced(run.id, token):
            await Lifecycle(a, Journal(a, EventBus())).run_to(run.id, RunStatus.EXECUTING)
        recorded = await Lifecycle(b, Journal(b, EventBus())).record_lost(run.id, owner)
        assert recorded.status is RunStatus.INTERRUPTED
        with fenced(run.id, token), pytest.raises(LeaseLostError):
            await Lifecycle(a, Journal(a, EventBus())).run_to(run.id, RunStatus.EXECUTING)
        assert (await b.get_run(run.id)).status is RunStatus.INTERRUPTED


# ---- the commands (real subprocesses) -------------------------------------------------------


def _submit_args(repo: Path) -> list[str]:
    return [
        "submit",
        DEMO_TASK,
        "--repo",
        str(repo),
        "--provider",
        "replay",
        "--replay",
        str(cassette_path()),
        "--yes",
    ]


def _check_one_commit_per_phase(home: Path, repo: Path, run_id: str, **env: str) -> None:
    doc = cli_json(home, "show", run_id, **env)
    assert doc["status"] == "completed", doc.get("error")
    assert_one_commit_per_phase(repo, doc)


def test_two_workers_complete_four_submitted_runs_each_claimed_once(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import main

    repo = prepare_demo_repo(tmp_path / "demo")
    ids = []
    for i in range(4):
        extra = ["--record", str(tmp_path / "ignored.jsonl")] if i == 0 else []
        assert main([*_submit_args(repo), *extra]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("run ")
        ids.append(out.split()[1])
        if i == 0:
            assert f"cassettes/{ids[0]}.jsonl" in err
    stored = _rows(home, "SELECT id, status, queued FROM runs ORDER BY created_at")
    assert [(r["id"], r["status"], r["queued"]) for r in stored] == [(i, "pending", 1) for i in ids]
    cassettes = _rows(home, "SELECT content FROM run_inputs WHERE name = 'replay.jsonl'")
    assert [r["content"] for r in cassettes] == [cassette_path().read_text()] * 4

    workers = [
        spawn(home, "worker", "--id", name, "--until-idle", "--poll", "0.2", "--max-parallel", n)
        for name, n in (("wa", "2"), ("wb", "1"))
    ]
    try:
        outputs = [w.communicate(timeout=240) for w in workers]
    finally:
        _reap(*workers)
    for w, (out, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out + err
    claimed = [
        line.split()[4]
        for out, _ in outputs
        for line in out.splitlines()
        if " claimed run " in line
    ]
    assert sorted(claimed) == sorted(ids), "every run is claimed exactly once"
    # Each run keeps the lease owner of the worker that drove it after the lease is released.
    drove = {
        line.split()[4]: name
        for name, (out, _) in zip(("wa", "wb"), outputs, strict=True)
        for line in out.splitlines()
        if " claimed run " in line
    }
    kept = _rows(home, "SELECT id, metadata FROM runs")
    assert {r["id"]: json.loads(r["metadata"])["last_worker"].split(":")[-1] for r in kept} == drove
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["id"]: r["last_worker"] for r in listed} == drove, "runs --json names the worker"
    assert main(["show", ids[0]]) == 0
    assert f"driver: driven by worker {drove[ids[0]]}" in capsys.readouterr().out
    rows = _rows(home, "SELECT id, status, lease_owner, lease_token FROM runs")
    assert {(r["status"], r["lease_owner"], r["lease_token"]) for r in rows} == {
        ("completed", None, 1)
    }
    for run_id in ids:
        _check_one_commit_per_phase(home, repo, run_id)
    recorded = home / "cassettes" / f"{ids[0]}.jsonl"
    assert recorded.stat().st_size > 0, "--record writes the cassette on the worker"
    assert not (tmp_path / "ignored.jsonl").exists()


def test_sigterm_interrupts_and_releases_and_the_same_worker_takes_it_back(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    repo = prepare_demo_repo(tmp_path / "demo")
    trigger, pidfile = tmp_path / "trigger", tmp_path / "pid"
    trigger.write_text("armed")
    hook = repo / ".git" / "hooks" / "post-commit"  # SIGTERM right after phase-001's commit
    hook.write_text(
        "#!/bin/sh\n"
        "git log -1 --format=%B | grep -q 'Orchestrator-Phase: phase-001' || exit 0\n"
        f"[ -f {trigger} ] || exit 0\n"
        f"rm -f {trigger}\n"
        f"while [ ! -s {pidfile} ]; do sleep 0.05; done\n"
        f"kill -TERM $(cat {pidfile})\n"
    )
    hook.chmod(0o755)
    submitted = cli(home, *_submit_args(repo), check=True)
    run_id = submitted.stdout.split()[1]

    worker = spawn(home, "worker", "--id", "w1", "--poll", "0.2")
    pidfile.write_text(str(worker.pid))
    try:
        out, err = worker.communicate(timeout=240)
    finally:
        _reap(worker)
    assert worker.returncode == 0, out + err
    assert not trigger.exists(), "the SIGTERM hook never fired"
    [row] = _rows(home, "SELECT status, lease_owner, queued, lease_token FROM runs")
    assert (row["status"], row["lease_owner"], row["queued"]) == ("interrupted", None, 1)
    assert _rows(home, "SELECT 1 FROM executions WHERE status = 'running'") == []

    again = cli(home, "worker", "--id", "w1", "--until-idle", "--poll", "0.2", timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"claimed run {run_id}" in again.stdout
    _check_one_commit_per_phase(home, repo, run_id)


def test_worker_help_and_a_bad_id(tmp_path: Path) -> None:
    helped = cli(tmp_path / "home", "worker", "--help", check=True)
    assert "SIGTERM" in helped.stdout and "--max-parallel" in helped.stdout
    bad = cli(tmp_path / "home", "worker", "--id", "no/slash", "--until-idle")
    assert bad.returncode == 2 and "a worker id is" in bad.stderr


def test_a_paused_worker_whose_run_was_taken_over_writes_nothing_for_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = prepare_demo_repo(tmp_path / "demo")
    trigger, pidfile = tmp_path / "trigger", tmp_path / "pid"
    trigger.write_text("armed")
    db = home / "orchestrator.db"
    # Right after phase-001's commit, stop worker A (a long pause) at a moment it holds no write
    # transaction, so the other worker is not blocked by it.
    pause = (
        "import os, signal, sqlite3, sys, time\n"
        "pid = int(open(sys.argv[1]).read())\n"
        "while True:\n"
        "    os.kill(pid, signal.SIGSTOP)\n"
        "    try:\n"
        "        db = sqlite3.connect(sys.argv[2], timeout=0, isolation_level=None)\n"
        "        db.execute('BEGIN IMMEDIATE'); db.execute('ROLLBACK'); db.close(); break\n"
        "    except sqlite3.OperationalError:\n"
        "        os.kill(pid, signal.SIGCONT); time.sleep(0.05)\n"
    )
    (tmp_path / "pause.py").write_text(pause)
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(
        "#!/bin/sh\n"
        "git log -1 --format=%B | grep -q 'Orchestrator-Phase: phase-001' || exit 0\n"
        f"[ -f {trigger} ] || exit 0\n"
        f"rm -f {trigger}\n"
        f"while [ ! -s {pidfile} ]; do sleep 0.05; done\n"
        f"{sys.executable} {tmp_path / 'pause.py'} {pidfile} {db}\n"
    )
    hook.chmod(0o755)
    # Without retrieval: a process paused inside the index's own database would block the other
    # worker there (both share this home); the run's own state is what this test is about.
    no_rag = {**FAST, "ORCHESTRATOR__RAG__ENABLED": "false"}
    run_id = cli(home, *_submit_args(repo), check=True, **no_rag).stdout.split()[1]

    paused = spawn(home, "worker", "--id", "wa", "--until-idle", "--poll", "0.2", **FAST)
    try:
        pidfile.write_text(str(paused.pid))
        wait_until(lambda: not trigger.exists(), what="worker A paused after phase-001's commit")
        wait_until(
            lambda: _rows(home, "SELECT lease_expires_at FROM runs")[0][0] < utcnow(),
            what="worker A's lease to expire",
        )
        # Paused on this machine, worker A still lives: its run is not free for anyone.
        idle = cli(home, "worker", "--id", "wb", "--until-idle", "--poll", "0.2", **FAST)
        assert idle.returncode == 0, idle.stdout + idle.stderr
        assert "driving 0 run(s)" in idle.stdout and "claimed" not in idle.stdout
        # Seen as held from another machine (whose processes nobody here can see), its expired
        # lease is free: worker B takes the run over.
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE runs SET lease_owner = 'elsewhere' || substr(lease_owner, instr(lease_owner, ':'))"
            )
        taker = cli(home, "worker", "--id", "wb", "--until-idle", "--poll", "0.2", **FAST)
        assert taker.returncode == 0, taker.stdout + taker.stderr
        assert f"claimed run {run_id} (lease token 2)" in taker.stdout
    finally:
        paused.send_signal(signal.SIGCONT)
    try:
        out, err = paused.communicate(timeout=120)
    finally:
        _reap(paused)
    assert paused.returncode == 0, out + err
    assert f"run {run_id}: lease lost to another worker" in out

    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed", (doc.get("error"), taker.stdout, out)
    _check_one_commit_per_phase(home, repo, run_id)
    [row] = _rows(home, "SELECT status, lease_owner, lease_token FROM runs")
    assert (row["status"], row["lease_owner"], row["lease_token"]) == ("completed", None, 2)
    lines = [r[0] for r in _rows(home, "SELECT message FROM events WHERE run_id = ?", run_id)]
    assert not [m for m in lines if "lease lost" in m], "worker A's lines were refused"
