"""Sixteen real `orchestrator run` processes at once on a fresh home, a few rounds: every run
completes, with its phase committed, and no process prints a traceback.

Each round starts on a new home, so the processes race to create it, migrate its database and
create the shared vector store and its collections (RAG on, with the instant hashing embedder);
twelve runs share one repository, so their worktrees and branches are made in it at the same time,
and each of the other four has its own. Each run is as small as a run gets (one phase adding one
file to a two-file repository), and the sixteen processes are forked from one launcher that has
imported the CLI once (tests/forkrun.py), so the time goes to what is under test: the shared state.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.cassette import new_file, phase, write_cassette
from tests.clirun import ROOT, cli_env, cli_json
from tests.conftest import git, make_repo
from tests.faultkit import untrue

PROCESSES = 16
ROUNDS = 2
SHARED = 12  # runs on one repository; each of the others has its own
PHASES = ("phase-001",)
DEADLINE_SECONDS = 280.0  # per round, for sixteen runs on a heavily overloaded machine


def _run_at_once(
    home: Path, commands: list[list[str]], folder: Path, **env: str
) -> list[tuple[int, str, str]]:
    """Each command's (exit code, stdout, stderr), run as sixteen processes started together;
    the whole group is killed past the deadline."""
    folder.mkdir(parents=True)
    (folder / "commands.json").write_text(json.dumps(commands))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tests.forkrun", str(folder), str(folder / "commands.json")],
        cwd=ROOT,
        env=cli_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the children are killed with it
    )
    try:
        out, err = launcher.communicate(timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{folder.name}: the runs were still going after {DEADLINE_SECONDS:.0f} s"
        ) from None
    finally:
        try:
            os.killpg(launcher.pid, signal.SIGKILL)  # nothing of the group outlives the test
        except ProcessLookupError:
            pass
        launcher.communicate()
    assert launcher.returncode == 0, out + err
    codes = json.loads((folder / "codes.json").read_text())
    return [
        (code, (folder / f"{n}.out").read_text(), (folder / f"{n}.err").read_text())
        for n, code in enumerate(codes)
    ]


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
        commands = [
            [
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
            ]
            for n in range(PROCESSES)
        ]
        # Verification stays on with no steps: what is under test is the shared state.
        results = _run_at_once(
            home, commands, tmp_path / f"round{r}", ORCHESTRATOR__VERIFICATION__AUTO_DETECT="false"
        )
        assert len(results) == PROCESSES
        for n, (code, out, err) in enumerate(results):
            said = f"round {r} process {n} exited {code}:\n{out[-2000:]}\n{err[-4000:]}"
            assert code == 0, said
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
