"""A run whose driving process lives on this machine is never shown as interrupted, however late
its heartbeat; a dead pid, or a pid another process now holds, is gone at once.

The lease owner names the process by host, pid and start time (core.liveness), so "this pid is
that same process" can be checked; on PostgreSQL (other machines) the lease expiry stays the rule.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.paths import Paths
from core.engine import Engine
from core.liveness import (
    OwnerState,
    owner_pid,
    owner_state,
    process_owner,
    process_start,
)
from core.records import RunStatus
from core.reports.document import holder_fields
from core.state.store import StateStore
from tests.clirun import cli, cli_json, spawn
from tests.waiting import wait_until
from tui.format import holder_words

HOST = socket.gethostname()


def _sleeper() -> subprocess.Popen[bytes]:
    """A live process of our own, to stand for a driver."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def _owner_of(proc: subprocess.Popen[bytes], suffix: str = "x") -> str:
    """The lease owner that process would write: "host:pid@start:SUFFIX"."""
    start = process_start(proc.pid)
    assert start, f"no /proc/{proc.pid}/stat start time"
    return f"{HOST}:{proc.pid}@{start}:{suffix}"


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)


def test_an_owner_is_this_very_process_only_with_its_start_time() -> None:
    own = process_owner()
    host, _, rest = own.partition(":")
    pid, _, start = rest.partition("@")
    assert (host, int(pid)) == (HOST, os.getpid()) and start.isdigit()
    assert owner_state(f"{own}:worker:w1") is OwnerState.ALIVE
    # the same live pid with another start time: the pid now belongs to another process
    assert owner_state(f"{host}:{pid}@{int(start) + 1}:x") is OwnerState.GONE
    # an owner written by an older version (no start time) of a live pid: the lease decides
    assert owner_state(f"{host}:{pid}:x") is OwnerState.UNKNOWN
    # another machine's processes cannot be seen from here
    assert owner_state(f"elsewhere:{pid}@{start}:x") is OwnerState.UNKNOWN
    sleeper = _sleeper()
    owner = _owner_of(sleeper)
    assert owner_state(owner) is OwnerState.ALIVE and owner_pid(owner) == sleeper.pid
    _stop(sleeper)
    assert owner_state(owner) is OwnerState.GONE
    assert owner_state(f"{HOST}:{sleeper.pid}:x") is OwnerState.GONE  # old style, dead pid


async def test_reads_and_claims_follow_the_owner_process_on_this_host(
    tmp_path: Path, backend: tuple[Path, str | None]
) -> None:
    path, url = backend
    sleeper = _sleeper()
    try:
        async with await StateStore.open(path, url=url) as store:
            sqlite = store.dialect == "sqlite"
            late = await store.create_run("late heartbeat", str(tmp_path), {})
            reused = await store.create_run("pid reused", str(tmp_path), {})
            for run in (late, reused):
                await store.queue_run(run.id)
            owner = _owner_of(sleeper, "worker:w1")
            assert await store.acquire_lease(late.id, owner, -1) == 1  # expired at once
            await store.update_run_status(late.id, RunStatus.EXECUTING)
            pid, start = owner.split(":")[1].split("@")
            wrong = f"{HOST}:{pid}@{int(start) + 1}:worker:w2"
            assert await store.acquire_lease(reused.id, wrong, 600) == 1  # not expired
            await store.update_run_status(reused.id, RunStatus.EXECUTING)

            seen = await store.get_run(late.id)
            if sqlite:  # the owner lives here: still running, its lease overdue
                assert seen.status.value == "executing" and not seen.lost
                assert holder_fields(seen)["lease_overdue"] is True
                assert holder_fields(seen)["owner_pid"] == sleeper.pid
                assert f"worker w1 on {HOST}, lease overdue since" in (holder_words(seen) or "")
            else:  # PostgreSQL cannot see this host's processes: the lease decides
                assert seen.status.value == "interrupted" and seen.lost
            gone = await store.get_run(reused.id)
            assert gone.lost is sqlite and holder_fields(gone)["lease_overdue"] is False
            if sqlite:
                assert gone.status.value == "interrupted"
                assert f"`orchestrator resume {reused.id}` continues it" in (gone.error or "")

            # Another worker neither claims nor takes the lease of the live owner's run ...
            if sqlite:
                assert await store.claim_next(f"{HOST}:1:worker:other", 60) is None
                assert await store.acquire_lease(late.id, f"{HOST}:1:worker:other", 60) is None
                assert late.id not in {r.id for r in await store.get_recoverable_runs()}
            _stop(sleeper)
            # ... and takes it once that process is gone.
            assert (await store.get_run(late.id)).status.value == "interrupted"
            claim = await store.claim_next(f"{HOST}:1:worker:other", 60)
            assert claim is not None and (claim.run.id, claim.token) == (late.id, 2)
    finally:
        _stop(sleeper)


def _rows(home: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "orchestrator.db") as db:
        return list(db.execute(sql, params))


def _stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (state T in /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] == "T"


def _pause_with_lease_run_out(proc: subprocess.Popen[str], home: Path, run_id: str) -> str:
    """Stop the driving process (a long pause: swapped out, starved) at a moment it holds no
    write transaction, and move its run's lease expiry a minute into the past; returns it."""
    expired = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")

    def paused() -> bool:
        proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: _stopped(proc.pid), what=f"process {proc.pid} to stop")
        db = sqlite3.connect(home / "orchestrator.db", timeout=0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE runs SET lease_expires_at = ? WHERE id = ?", (expired, run_id))
            db.execute("COMMIT")
        except sqlite3.OperationalError:  # it stopped inside a write: let it finish that
            proc.send_signal(signal.SIGCONT)
            return False
        finally:
            db.close()
        return True

    wait_until(paused, what=f"process {proc.pid} stopped outside a write", step=0.05)
    return expired


def test_a_live_driver_whose_lease_ran_out_is_running_until_it_is_killed(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    proc = spawn(home, "demo", "--headless")  # asks for approval of its risky phase, then waits
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]

        def asked() -> list[Any]:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"run {run_id} ended ({proc.returncode}):\n{out}{err}")
            return list(cli_json(home, "interventions", "--run", run_id, "--pending"))

        wait_until(asked, what=f"a pending intervention in run {run_id}", timeout=180, step=0.2)
        expires = _pause_with_lease_run_out(proc, home, run_id)

        [run] = cli_json(home, "runs")
        assert run["status"] == "waiting" and not run.get("error"), run
        assert run["lease_overdue"] is True, run
        assert (run["owner_pid"], run["lease_expires_at"]) == (proc.pid, expires)
        shown = cli(home, "show", run_id, check=True).stdout
        assert shown.startswith(f"run {run_id}  waiting\n"), shown
        assert f"lease overdue since {expires}, its process {proc.pid} is alive" in shown

        # resume (a writing command) neither records it as interrupted nor takes it over
        refused = cli(home, "resume", run_id, "--headless", "--yes")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"still driven by process {proc.pid} on this machine" in refused.stderr
        assert f"kill {proc.pid}" in refused.stderr and "overdue since" in refused.stderr
        assert cli_json(home, "show", run_id)["status"] == "waiting"
        assert _rows(home, "SELECT status FROM runs WHERE id = ?", run_id) == [("waiting",)]

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        [run] = cli_json(home, "runs")
        assert run["status"] == "interrupted" and not run["lease_overdue"], run
        assert f"({run['lease_owner']}) is gone; `orchestrator resume {run_id}`" in run["error"]
        assert cli(home, "show", run_id, check=True).stdout.startswith(
            f"run {run_id}  interrupted  (interrupted: the process driving it"
        )

        resumed = cli(home, "resume", run_id, "--headless", "--yes", timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert cli_json(home, "show", run_id)["status"] == "completed"
    finally:
        _stop(proc)


async def test_a_writing_command_leaves_a_late_but_live_run_alone(
    tmp_path: Path, home: Path
) -> None:
    """`record_lost_runs` (every writing command) records only runs whose process is gone."""
    sleeper = _sleeper()
    try:
        async with await Engine.open(Paths(home)) as engine:
            run = await engine.store.create_run("late", str(tmp_path), {})
            assert await engine.store.acquire_lease(run.id, _owner_of(sleeper), -1) == 1
            await engine.store.update_run_status(run.id, RunStatus.EXECUTING)
            assert await engine.record_lost_runs() == []
            assert (await engine.get_run(run.id)).status.value == "executing"
            _stop(sleeper)
            assert [r.id for r in await engine.record_lost_runs()] == [run.id]
            assert (await engine.get_run(run.id)).status.value == "interrupted"
    finally:
        _stop(sleeper)


async def test_a_postgresql_database_made_before_owner_lives_gets_it_on_open(
    tmp_path: Path, pg_url: str
) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP FUNCTION owner_lives(text)")  # as an older version created it
    async with await StateStore.open(tmp_path / "state.db", url=pg_url) as store:
        run = await store.create_run("task", str(tmp_path), {})
        assert await store.acquire_lease(run.id, process_owner(), -1) == 1
        await store.update_run_status(run.id, RunStatus.EXECUTING)
        # PostgreSQL cannot see this host's processes: an expired lease is lost there
        assert (await store.get_run(run.id)).status is RunStatus.INTERRUPTED
    with psycopg.connect(pg_url, autocommit=True) as conn:
        [(created,)] = conn.execute("SELECT to_regprocedure('owner_lives(text)') IS NOT NULL")
    assert created, "the writing open created the function again, for older versions' SQL"


async def test_a_read_only_open_of_an_older_postgresql_database_reads_and_sorts(
    tmp_path: Path, pg_url: str
) -> None:
    """Reads write the liveness functions and instr inline on PostgreSQL, so a database whose
    functions predate this version (no writing open has migrated it) is read all the same."""
    import psycopg

    async with await StateStore.open(tmp_path / "state.db", url=pg_url) as store:
        run = await store.create_run("task", str(tmp_path), {})
        assert await store.acquire_lease(run.id, process_owner(), -1) == 1
        await store.update_run_status(run.id, RunStatus.EXECUTING)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for function in ("owner_lives(text)", "owner_gone(text)", "instr(text, text)"):
            conn.execute(f"DROP FUNCTION {function}")  # as an older version left the database
    async with await StateStore.open(tmp_path / "state.db", url=pg_url, read_only=True) as store:
        assert (await store.get_run(run.id)).status is RunStatus.INTERRUPTED
        page = await store.list_runs_page(sort="worker")
        assert [(s.run.id, s.run.status) for s in page] == [(run.id, RunStatus.INTERRUPTED)]
