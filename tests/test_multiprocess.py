"""Sixteen real `orchestrator run` processes at once on a fresh home, a few rounds: every run
completes, with its phase committed, and no process prints a traceback.

Each round starts on a new home, so the processes race to create it, migrate its database and
create the shared vector store and its collections (RAG on, with the instant hashing embedder);
twelve runs share one repository, so their worktrees and branches are made in it at the same time,
and each of the other four has its own. Each run is as small as a run gets (one phase adding one
file to a two-file repository), so the time goes to what is under test: the shared state.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.cassette import new_file, phase, write_cassette
from tests.clirun import cli_json, spawn
from tests.conftest import git, make_repo
from tests.faultkit import untrue

PROCESSES = 16
ROUNDS = 2
SHARED = 12  # runs on one repository; each of the others has its own
PHASES = ("phase-001",)
DEADLINE_SECONDS = 280.0  # per round, for sixteen runs on a heavily overloaded machine


def _finish_all(procs: list[subprocess.Popen[str]], what: str) -> list[tuple[str, str]]:
    """Each process's (stdout, stderr) once all have exited; kills them all past the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    results = []
    try:
        for n, proc in enumerate(procs):
            left = max(deadline - time.monotonic(), 0.1)
            try:
                results.append(proc.communicate(timeout=left))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{what}: process {n} (pid {proc.pid}) was still running after "
                    f"{DEADLINE_SECONDS:.0f} s"
                ) from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def _stored_phases(home: Path) -> dict[str, list[tuple[str, str, str | None]]]:
    """Each stored run's phases as (plan id, status, commit), read from the database."""
    phases: dict[str, list[tuple[str, str, str | None]]] = {}
    with closing(sqlite3.connect(f"file:{home / 'orchestrator.db'}?mode=ro", uri=True)) as db:
        for run_id, plan_id, status, commit in db.execute(
            "SELECT run_id, plan_id, status, commit_sha FROM phases ORDER BY run_id, plan_id"
        ):
            phases.setdefault(run_id, []).append((plan_id, status, commit))
    return phases


@pytest.mark.timeout(2 * ROUNDS * DEADLINE_SECONDS)  # thirty-two runs: more than the default bound
def test_sixteen_processes_on_a_fresh_home_all_complete(tmp_path: Path) -> None:
    # One phase adding a module: the smallest run that still plans, executes and commits.
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase(pid) for pid in PHASES],
        {
            (pid, 1): new_file(f"{pid}.py", f"def {pid.replace('-', '_')}():\n    return 1\n")
            for pid in PHASES
        },
    )
    repos = [
        make_repo(
            tmp_path / f"repo{n}",
            {"app.py": f"def main():\n    return {n}\n", "README.md": "# App\nRuns main.\n"},
        )
        for n in range(PROCESSES - SHARED + 1)
    ]
    for r in range(ROUNDS):
        home = tmp_path / f"home{r}"
        procs = [
            spawn(
                home,
                "run",
                f"task {r}-{n}",
                "--repo",
                str(repos[max(n - SHARED + 1, 0)]),
                "--headless",
                "--yes",
                "--provider",
                "replay",
                "--replay",
                str(cassette),
                # Verification stays on with no steps: what is under test is the shared state.
                ORCHESTRATOR__VERIFICATION__AUTO_DETECT="false",
            )
            for n in range(PROCESSES)
        ]
        results = _finish_all(procs, f"round {r}")
        for n, (proc, (out, err)) in enumerate(zip(procs, results, strict=True)):
            said = f"round {r} process {n} exited {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}"
            assert proc.returncode == 0, said
            assert "Traceback" not in err and "locked" not in err, said
            assert out.strip().splitlines()[-1].split()[2] == "completed", said

        runs = cli_json(home, "runs", "--limit", "100")
        assert len(runs) == PROCESSES, [run["id"] for run in runs]
        left = [(run["id"], run["status"], run["error"]) for run in runs]
        assert [x for x in left if x[1] != "completed"] == [], f"round {r}: {left}"
        assert all(run["phases_completed"] == run["phases_total"] == len(PHASES) for run in runs)
        stored = _stored_phases(home)
        for run in runs:
            assert [(p, s) for p, s, _ in stored[run["id"]]] == [(p, "completed") for p in PHASES]
            assert all(commit for _, _, commit in stored[run["id"]]), stored[run["id"]]
            # The run's branch holds every phase's work.
            files = git(Path(run["repo"]), "ls-tree", "--name-only", run["branch"]).split()
            assert {f"{p}.py" for p in PHASES} <= set(files), (run["id"], files)
        assert untrue(home / "orchestrator.db", home) == []
        # Retrieval was on: the runs made the shared vector store of this home.
        assert (home / "indexes" / "chroma" / "chroma.sqlite3").is_file()
