"""Helpers of the fault tests and bench/faults.py: what must be true of a store after any fault,
and a finished run with many phases built directly through the project's git helpers and store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from config.paths import Paths
from core.git import worktrees
from core.git.repo import git_cmd, run_git
from core.records import PhaseStatus, RunStatus
from core.state.store import StateStore
from tests.cassette import write_cassette

STOPPED = ("completed", "failed", "cancelled", "interrupted")
FINISHED = ("completed", "failed", "cancelled")


def untrue(db_path: Path, home: Path | None = None) -> list[str]:
    """What a store says that cannot be true (empty when all is well): a phase in_progress or an
    execution running in a stopped run, a pending intervention in a finished one, a failed run
    without its error, a path the orchestrator stored outside the home."""
    problems: list[str] = []
    uri = f"file:{db_path}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        stopped = ",".join(f"'{s}'" for s in STOPPED)
        finished = ",".join(f"'{s}'" for s in FINISHED)
        for run_id, status, plan_id in db.execute(
            "SELECT r.id, r.status, p.plan_id FROM runs r JOIN phases p ON p.run_id = r.id"
            f" WHERE r.status IN ({stopped}) AND p.status = 'in_progress'"
        ):
            problems.append(f"run {run_id} {status}: phase {plan_id} in_progress")
        for run_id, status, n in db.execute(
            "SELECT r.id, r.status, COUNT(*) FROM runs r JOIN executions e ON e.run_id = r.id"
            f" WHERE r.status IN ({stopped}) AND e.status = 'running' GROUP BY r.id"
        ):
            problems.append(f"run {run_id} {status}: {n} execution(s) running")
        for run_id, status, n in db.execute(
            "SELECT r.id, r.status, COUNT(*) FROM runs r JOIN manual_interventions i ON i.run_id = r.id"
            f" WHERE r.status IN ({finished}) AND i.status = 'pending' GROUP BY r.id"
        ):
            problems.append(f"run {run_id} {status}: {n} intervention(s) pending")
        for (run_id,) in db.execute(
            "SELECT id FROM runs WHERE status = 'failed' AND COALESCE(error, '') = ''"
        ):
            problems.append(f"run {run_id} failed without an error stored")
        if home is not None:
            stored = [
                *db.execute("SELECT id, worktree FROM runs WHERE worktree IS NOT NULL"),
                *db.execute("SELECT plan_id, worktree FROM phases WHERE worktree IS NOT NULL"),
                *db.execute("SELECT name, path FROM artifacts"),
            ]
            root = os.path.realpath(home)
            for owner, path in stored:
                if not os.path.realpath(path).startswith(root + os.sep):
                    problems.append(f"{owner}: {path} is outside the home {home}")
    return problems


async def finished_run_with_phases(
    paths: Paths, store: StateStore, repo: Path, phases: int, prefix: str = "orchestrator/"
) -> str:
    """A completed run of `phases` phases, each with its worktree and branch made by the project's
    git helpers (as the phase runner does), plus an index folder per phase worktree; its id."""
    run = await store.create_run("many phases", repo, {})
    head = run_git(git_cmd(repo), "rev-parse", "HEAD")
    run_tree = paths.worktrees / run.id / "run"
    await store.set_run_git(run.id, head, f"{prefix}{run.id}", run_tree)
    worktrees.create_worktree(repo, run_tree, f"{prefix}{run.id}", head)
    plan = [
        {
            "id": f"p{i:03d}",
            "name": f"phase {i}",
            "description": "",
            "dependencies": [],
            "estimated_complexity": "low",
            "risk_level": "low",
            "verification_criteria": [],
        }
        for i in range(phases)
    ]
    for phase in await store.save_plan(run.id, plan, 1):
        folder = paths.worktrees / run.id / phase.plan_id
        branch = f"{prefix}{run.id}--{phase.plan_id}"
        worktrees.create_worktree(repo, folder, branch, head)
        await store.update_phase_status(
            phase.id, PhaseStatus.COMPLETED, commit=head, branch=branch, worktree=folder
        )
        index = paths.indexes / f"{phase.plan_id}-{run.id}" / "hashing-256"
        index.mkdir(parents=True)
        with closing(sqlite3.connect(index / "catalog.sqlite")) as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)", [("root", str(folder)), ("embedder", "hashing")]
            )
            db.commit()
        (paths.reports / run.id / f"{phase.plan_id}-attempt-1").mkdir(parents=True)
    await store.update_run_status(run.id, RunStatus.COMPLETED)
    return run.id


def cassette_file(path: Path, plan: list[dict], executor: dict[str, str]) -> Path:
    """A replay cassette: the planner answers `plan`, the executor answers per phase id."""
    return write_cassette(path, plan, {(phase, 1): content for phase, content in executor.items()})


def plan_phase(pid: str, deps: list[str] | None = None) -> dict:
    """One low-risk phase of a plan."""
    return {
        "id": pid,
        "name": f"phase {pid[:20]}",
        "description": "write one file",
        "dependencies": deps or [],
        "estimated_complexity": "low",
        "risk_level": "low",
        "verification_criteria": [],
    }


def small_repo(path: Path) -> Path:
    """A git repository with one commit of one file."""
    path.mkdir(parents=True)
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "b"],
        ["config", "user.email", "b@b"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    (path / "README.md").write_text("faults\n")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=path, check=True)
    return path


def new_file_edit(name: str) -> str:
    """An executor answer (a SEARCH/REPLACE block) that creates the file `name`."""
    return f"{name}\n```\n<<<<<<< SEARCH\n=======\nhello\n>>>>>>> REPLACE\n```\n"


_WRITE_AND_DIE = """
import asyncio, os, sys
from pathlib import Path
from core.state.store import StateStore

async def main() -> None:
    store = await StateStore.open(Path(sys.argv[1]) / "orchestrator.db")
    run = await store.create_run("only in the WAL", Path(sys.argv[1]), {})
    print(run.id, flush=True)
    os._exit(0)  # killed before any checkpoint: the run lives only in the -wal file

asyncio.run(main())
"""


def run_only_in_the_wal(home: Path) -> str:
    """Store a run in `home` from a process killed before any checkpoint, then delete the -shm
    file (as a copy or a cleanup leaves it): the run is only in the -wal file. Its id."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", _WRITE_AND_DIE, str(home)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    db = home / "orchestrator.db"
    assert Path(f"{db}-wal").stat().st_size > 0, "the run should be in the WAL"
    Path(f"{db}-shm").unlink(missing_ok=True)
    return proc.stdout.strip()
