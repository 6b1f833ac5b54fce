"""Queue and workers on PostgreSQL: submit and worker against a shared server, and the issue's
end-to-end run of three workers on three homes with a crash and a cut-off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from config.paths import Paths
from core.demo.prepare import prepare_demo_repo
from core.engine import Engine
from core.timeutil import parse_ts
from tests.cassette import new_file, phase, write_cassette
from tests.clirun import cli, cli_json, spawn
from tests.conftest import git
from tests.fakes.tcp_proxy import TcpProxy
from tests.pg_support import PgServer
from tests.test_remote_repos import TASK, make_origin, phase_commits
from tests.test_workers import _check_one_commit_per_phase, _reap, _submit_args
from tests.tui.shell_support import ShellApp, top, wait_for
from tests.waiting import wait_until
from tui.screens.runs import RunsScreen


def test_an_idle_worker_is_woken_by_a_submit_to_postgresql(tmp_path: Path, pg_url: str) -> None:
    db = {"ORCHESTRATOR__STATE__URL": pg_url}
    submitter, machine = tmp_path / "laptop", tmp_path / "builder"
    repo = prepare_demo_repo(tmp_path / "demo")
    status = "SELECT status FROM runs WHERE id = %s"
    first = cli(submitter, *_submit_args(repo), check=True, **db).stdout.split()[1]
    # Polling every ten minutes: only the NOTIFY of a submit can wake the idle worker in time.
    worker = spawn(machine, "worker", "--id", "b1", "--poll", "600", **db)
    try:
        wait_until(lambda: _query(pg_url, status, first) == [("completed",)], what="run 1 done")
        second = cli(submitter, *_submit_args(repo), check=True, **db).stdout.split()[1]
        wait_until(lambda: _query(pg_url, status, second) == [("completed",)], what="run 2 done")
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    finally:
        _reap(worker)
    ids = [first, second]
    assert worker.returncode == 0, out + err
    assert sorted(
        line.split()[4] for line in out.splitlines() if " claimed run " in line
    ) == sorted(ids)
    for run_id in ids:
        _check_one_commit_per_phase(submitter, repo, run_id, **db)
    listed = {r["id"]: r["status"] for r in cli_json(submitter, "runs", **db)}
    assert listed == dict.fromkeys(ids, "completed")
    assert not list(tmp_path.glob("*/orchestrator.db")), "both homes used the shared server"


# ---- the end-to-end run ----------------------------------------------------------------

GATE = """\
import os, pathlib, sys, time
folder = pathlib.Path(sys.argv[1])
for name in ("kill", "cut"):
    try:
        os.rename(folder / name, folder / f"{name}.taken")  # one verification takes each gate
    except FileNotFoundError:
        continue
    (folder / f"{name}.where").write_text(os.getcwd())
    deadline = time.monotonic() + 120
    while not (folder / f"{name}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    break
"""
PHASES = [phase("phase-001"), phase("phase-002", ["phase-001"])]
# A high-risk phase waits for a person's approval (execution.approval_risk_level).
RISKY = phase("phase-001", risk="high")
ANSWERS = {
    (pid, attempt): new_file(f"{pid}.txt", pid)
    for pid in ("phase-001", "phase-002")
    for attempt in (1, 2, 3)
}
E2E_LEASE = {
    "ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "3",
    "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.5",
    "ORCHESTRATOR__RAG__ENABLED": "false",
}

TWICE = [
    "SELECT run_id, name FROM artifacts GROUP BY run_id, phase_id, name HAVING count(*) > 1",
    "SELECT execution_id FROM findings GROUP BY execution_id, fingerprint HAVING count(*) > 1",
    "SELECT commit_sha FROM phases GROUP BY commit_sha HAVING count(*) > 1",
]


def _query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def test_three_workers_on_three_homes_survive_a_crash_and_a_partition(
    tmp_path: Path, pg_server: PgServer, pg_url: str
) -> None:
    origin = make_origin(tmp_path)
    url = origin.as_uri()
    cassette = write_cassette(tmp_path / "c.jsonl", PHASES, ANSWERS)
    risky = write_cassette(tmp_path / "risky.jsonl", [RISKY, PHASES[1]], ANSWERS)
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "kill").touch()
    (gates / "cut").touch()
    (tmp_path / "gate.py").write_text(GATE)
    laptop = tmp_path / "laptop"
    db = {"ORCHESTRATOR__STATE__URL": pg_url, **E2E_LEASE}
    submit_env = {
        **db,
        "ORCHESTRATOR__VERIFICATION__TEST": json.dumps(
            [f"{sys.executable} {tmp_path / 'gate.py'} {gates}"]
        ),
        "ORCHESTRATOR__VERIFICATION__BASELINE": "false",
        "ORCHESTRATOR__VERIFICATION__AUTO_DETECT": "false",
    }
    base = ["submit", TASK, "--repo", url, "--provider", "replay", "--replay"]
    ids = [
        cli(laptop, *base, *extra, check=True, **submit_env).stdout.split()[1]
        for extra in [[str(risky)]] + [[str(cassette), "--yes"]] * 7
    ]
    waiting = ids[0]  # submitted without --yes: its high-risk phase waits for a person

    port = pg_server.port
    proxies = [TcpProxy("127.0.0.1", port) for _ in range(3)]
    homes = [tmp_path / f"builder{i}" for i in range(3)]
    workers: list[subprocess.Popen[str]] = []
    with contextlib.ExitStack() as stack:
        for proxy in proxies:
            stack.enter_context(proxy)
        stack.callback(_reap_all, workers)
        for i, (home, proxy) in enumerate(zip(homes, proxies, strict=True)):
            env = {**db, "ORCHESTRATOR__STATE__URL": proxy.url_for(pg_url, port)}
            workers.append(spawn(home, "worker", "--id", f"b{i}", "--poll", "0.2", **env))

        # The approval, given from the laptop, reaches the worker that waits for it.
        asked = "SELECT id FROM manual_interventions WHERE run_id = %s AND status = 'pending'"
        wait_until(lambda: _query(pg_url, asked, waiting), what=f"run {waiting} to ask")
        [ask] = cli_json(laptop, "interventions", "--run", waiting, "--pending", **db)
        [(before,)] = _query(pg_url, "SELECT max(seq) FROM events WHERE run_id = %s", waiting)
        approved = cli(laptop, "approve", ask["id"], **db)
        exited = time.monotonic()
        assert approved.returncode == 0, approved.stdout + approved.stderr
        [(seq, _, logged), *_] = wait_until(
            lambda: _worker_event_after(pg_url, waiting, before), what="the worker's next event"
        )
        latency = time.monotonic() - exited
        answered = "SELECT resolved_at FROM manual_interventions WHERE id = %s"
        [(resolved,)] = _query(pg_url, answered, ask["id"])
        stored = (parse_ts(logged) - parse_ts(resolved)).total_seconds()
        print(
            f"approval: the worker's next event (seq {seq}) was visible {latency:.3f} s after "
            f"`approve` exited, logged {stored:.3f} s after the answer was stored"
        )
        assert latency < 5

        # One worker dies (SIGKILL) in the middle of a phase's verification.
        where = wait_until(
            lambda: _read(gates / "kill.where"), what="a verification at the kill gate"
        )
        victim = _holder(homes, where)
        killed_run = Path(where).relative_to(homes[victim] / "worktrees").parts[0]
        workers[victim].kill()
        workers[victim].wait(timeout=30)
        (gates / "kill.release").touch()

        # Another is cut off from the database for longer than its lease while verifying.
        where = wait_until(
            lambda: _read(gates / "cut.where"), what="a verification at the cut gate"
        )
        cut = _holder(homes, where)
        assert cut != victim
        proxies[cut].cut()
        cut_run = Path(where).relative_to(homes[cut] / "worktrees").parts[0]
        holder = "SELECT lease_owner FROM runs WHERE id = %s"
        wait_until(
            lambda: f":worker:b{cut}" not in str(_query(pg_url, holder, cut_run)[0][0]),
            what=f"run {cut_run} to be taken over from the cut-off worker",
            timeout=120,
        )
        (gates / "cut.release").touch()
        proxies[cut].restore()

        def all_done() -> bool:
            rows = _query(pg_url, "SELECT status FROM runs")
            return [r[0] for r in rows] == ["completed"] * 8

        wait_until(all_done, what="all eight runs to complete", timeout=180)
        outputs: dict[int, str] = {}
        for i, worker in enumerate(workers):
            if i != victim:
                worker.send_signal(signal.SIGTERM)
                out, err = worker.communicate(timeout=60)
                assert worker.returncode == 0, out + err
                outputs[i] = out + err
    # The cut-off worker learnt it lost the run, wrote nothing more for it, and went on.
    assert f"run {cut_run}: lease lost to another worker" in outputs[cut], outputs[cut]

    # What the laptop sees: every run completed, one commit per phase on the origin.
    listed = {r["id"]: r["status"] for r in cli_json(laptop, "runs", **db)}
    assert listed == dict.fromkeys(ids, "completed")
    for run_id in ids:
        doc = cli_json(laptop, "show", run_id, **db)
        assert doc["status"] == "completed"
        branch = f"orchestrator/{run_id}"
        assert phase_commits(origin, branch) == ["phase-001", "phase-002"], run_id
        tip = git(origin, "rev-parse", branch)
        for p in doc["phases"]:
            attempts = sorted(e["attempt"] for e in doc["executions"] if e["phase_id"] == p["id"])
            assert attempts == list(range(1, len(attempts) + 1)), (run_id, p["plan_id"], attempts)
            git(origin, "merge-base", "--is-ancestor", p["commit"], tip)
    asyncio.run(_the_app_lists_them(laptop, pg_url, ids))
    # Nothing written twice: no artifact, finding or phase commit stored twice.
    assert _query(pg_url, "SELECT count(*) FROM artifacts")[0][0] > 0
    for sql in TWICE:
        assert _query(pg_url, sql) == [], sql
    stale = "SELECT message FROM events WHERE run_id = %s AND message LIKE '%%lease lost%%'"
    assert _query(pg_url, stale, cut_run) == [], "the cut-off worker's lines were refused"
    # The attempts the dead and the cut-off worker left open are closed, truthfully.
    assert _query(pg_url, "SELECT id FROM executions WHERE status = 'running'") == []
    assert _query(pg_url, "SELECT id FROM runs WHERE lease_owner IS NOT NULL") == []
    retried = _query(
        pg_url, "SELECT run_id, count(*) FROM executions WHERE attempt_number > 1 GROUP BY run_id"
    )
    print("runs with a second attempt:", retried)
    assert {r[0] for r in retried} >= {cut_run, killed_run}


async def _the_app_lists_them(home: Path, url: str, ids: list[str]) -> None:
    """The app on the submitter's home, opened on the shared database, lists every run completed."""

    class SharedEngine(Engine):
        @classmethod
        async def open(cls, paths: Paths, **options: Any) -> Engine:
            return await Engine.open(Paths.resolve(str(paths.home), env={}, cli_db=url), **options)

    app = ShellApp(home, engine_class=SharedEngine)
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
        runs = top(app, RunsScreen)
        await wait_for(
            pilot,
            lambda: (
                sorted((s.run.id, s.run.status.value) for s in runs.summaries)
                == sorted((run_id, "completed") for run_id in ids)
            ),
            what="the eight runs, completed, in the app",
        )


def _worker_event_after(url: str, run_id: str, seq: int) -> list[tuple[Any, ...]]:
    rows = _query(
        url,
        "SELECT seq, message, ts FROM events WHERE run_id = %s AND seq > %s ORDER BY seq",
        run_id,
        seq,
    )
    return [r for r in rows if "approved" not in r[1]]


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _holder(homes: list[Path], where: str) -> int:
    [index] = [i for i, home in enumerate(homes) if where.startswith(str(home) + "/")]
    return index


def _reap_all(workers: list[subprocess.Popen[str]]) -> None:
    _reap(*workers)
