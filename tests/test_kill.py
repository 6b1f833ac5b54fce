"""Runs killed with SIGKILL at the worst moments resume to the same result as an uninterrupted run."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from core.demo.prepare import cassette_path, prepare_demo_repo
from tests.clirun import assert_one_commit_per_phase, cli, cli_json, spawn
from tests.conftest import git

FAST = {
    "ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "2",
    "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.5",
}


def _run_args(repo: Path) -> list[str]:
    return [
        "run",
        "Add input validation and a CSV export to the inventory store",
        "--repo",
        str(repo),
        "--headless",
        "--yes",
        "--provider",
        "replay",
        "--replay",
        str(cassette_path()),
    ]


def _counts(home: Path, run_id: str) -> tuple[int, int]:
    with sqlite3.connect(home / "orchestrator.db") as db:
        findings = db.execute(
            "SELECT COUNT(*) FROM findings WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        logs = db.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
    return findings, logs


def _uninterrupted_tree(tmp_path: Path) -> str:
    home = tmp_path / "reference-home"
    repo = prepare_demo_repo(tmp_path / "reference")
    proc = cli(home, *_run_args(repo), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = cli_json(home, "runs")[0]
    return git(repo, "rev-parse", f"{run['branch']}^{{tree}}")


def _kill_then_resume(
    tmp_path: Path, home: Path, repo: Path, trigger: Path, pidfile: Path, extra: dict[str, str]
) -> str:
    trigger.write_text("armed")
    proc = spawn(home, *_run_args(repo), **FAST, **extra)
    pidfile.write_text(str(proc.pid))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, f"expected a SIGKILL, got {proc.returncode}\n{out}\n{err}"
    assert not trigger.exists(), "the kill hook never fired"
    run_id = out.splitlines()[0].split()[1]
    before = _counts(home, run_id)

    # Wait (on a condition, not a clock) until the dead run is listed as recoverable.
    deadline = time.monotonic() + 60
    while run_id not in [r["id"] for r in cli_json(home, "runs", "--recoverable", **FAST)]:
        assert time.monotonic() < deadline, "the killed run never became recoverable"
    resumed = cli(home, "resume", run_id, "--headless", "--yes", timeout=300, **FAST)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    after = _counts(home, run_id)
    assert after[0] >= before[0] and after[1] >= before[1], (before, after)
    assert_one_commit_per_phase(repo, doc)
    return git(repo, "rev-parse", f"{doc['branch']}^{{tree}}")


def test_kill_right_after_a_phase_commit_before_the_database_records_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = prepare_demo_repo(tmp_path / "demo")
    trigger, pidfile = tmp_path / "trigger", tmp_path / "pid"
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(
        "#!/bin/sh\n"
        "git log -1 --format=%B | grep -q 'Orchestrator-Phase: phase-001' || exit 0\n"
        f"[ -f {trigger} ] || exit 0\n"
        f"rm -f {trigger}\n"
        f"while [ ! -s {pidfile} ]; do sleep 0.05; done\n"
        f"kill -9 $(cat {pidfile})\n"
    )
    hook.chmod(0o755)
    tree = _kill_then_resume(tmp_path, home, repo, trigger, pidfile, {})
    assert tree == _uninterrupted_tree(tmp_path)


def test_kill_in_the_middle_of_verification(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = prepare_demo_repo(tmp_path / "demo")
    trigger, pidfile = tmp_path / "trigger", tmp_path / "pid"
    killer = tmp_path / "kill-once.sh"
    killer.write_text(
        "#!/bin/sh\n"
        "grep -q lineterminator inventory/export.py 2>/dev/null || exit 0\n"
        f"[ -f {trigger} ] || exit 0\n"
        f"rm -f {trigger}\n"
        f"kill -9 $(cat {pidfile})\n"
    )
    killer.chmod(0o755)
    test_cmd = f'["sh {killer}; python3 -m unittest discover -s tests -q"]'
    tree = _kill_then_resume(
        tmp_path, home, repo, trigger, pidfile, {"ORCHESTRATOR__VERIFICATION__TEST": test_cmd}
    )
    assert tree == _uninterrupted_tree(tmp_path)
