"""Queue and workers on PostgreSQL: submit and worker against a shared server, and the issue's
end-to-end run of three workers on three homes with a crash and a cut-off."""

from __future__ import annotations

from pathlib import Path

from core.demo.prepare import prepare_demo_repo
from tests.clirun import cli, cli_json, spawn
from tests.test_workers import _check_one_commit_per_phase, _reap, _submit_args


def test_one_worker_completes_two_runs_submitted_to_postgresql(tmp_path: Path, pg_url: str) -> None:
    db = {"ORCHESTRATOR__STATE__URL": pg_url}
    submitter, machine = tmp_path / "laptop", tmp_path / "builder"
    repo = prepare_demo_repo(tmp_path / "demo")
    ids = [
        cli(submitter, *_submit_args(repo), check=True, **db).stdout.split()[1] for _ in range(2)
    ]
    worker = spawn(machine, "worker", "--id", "b1", "--until-idle", "--poll", "0.2", **db)
    try:
        out, err = worker.communicate(timeout=240)
    finally:
        _reap(worker)
    assert worker.returncode == 0, out + err
    assert sorted(
        line.split()[4] for line in out.splitlines() if " claimed run " in line
    ) == sorted(ids)
    for run_id in ids:
        _check_one_commit_per_phase(submitter, repo, run_id, **db)
    listed = {r["id"]: r["status"] for r in cli_json(submitter, "runs", **db)}
    assert listed == dict.fromkeys(ids, "completed")
    assert not list(tmp_path.glob("*/orchestrator.db")), "both homes used the shared server"
