"""The home under faults: read-only homes, a full disk, a damaged database, `doctor`, and `clean`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from config.paths import Paths
from core.diskfull import RESERVE_NAME, disk_full_error, is_disk_full
from core.engine import Engine
from core.errors import DiskFullError, GitError, StateError
from core.git.repo import git_cmd, run_git
from core.records import RunStatus
from core.state.store import StateStore
from tests.clirun import cli, cli_json
from tests.conftest import git, make_repo
from tests.faultkit import (
    cassette_file,
    finished_run_with_phases,
    new_file_edit,
    plan_phase,
    small_repo,
    untrue,
)
from tui.cli import main

ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a read-only bind mount or a tmpfs needs root"
)


@contextmanager
def mounted(*args: str, target: Path) -> Iterator[Path]:
    """A mount for the duration of the block (root only), unmounted even when the test fails."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


@contextmanager
def read_only_view(folder: Path, target: Path) -> Iterator[Path]:
    """`folder` seen read-only at `target` through a bind mount."""
    with mounted("--bind", str(folder), target=target):
        subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(target)], check=True, capture_output=True
        )
        yield target


def _store_with_run(home: Path) -> str:
    async def make() -> str:
        async with await StateStore.open(home / "orchestrator.db") as store:
            run = await store.create_run("look at me", home, {})
            await store.update_run_status(run.id, RunStatus.FAILED, error="it broke")
            return run.id

    home.mkdir(parents=True, exist_ok=True)
    return asyncio.run(make())


# ---- read-only home ------------------------------------------------------------------------------


def _main(home: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The `orchestrator` command run in this process (no interpreter start-up per call)."""
    code = main(["--home", str(home), *args])
    out, err = capsys.readouterr()
    return code, out, err


@ROOT_ONLY
def test_read_commands_work_on_a_read_only_home_and_writing_ones_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    run_id = _store_with_run(home)
    with read_only_view(home, tmp_path / "ro") as ro:
        code, out, err = _main(ro, "runs", "--json", capsys=capsys)
        assert code == 0 and [r["id"] for r in json.loads(out)] == [run_id], err
        code, out, _ = _main(ro, "show", run_id, "--json", capsys=capsys)
        assert code == 0 and json.loads(out)["error"] == "it broke"
        code, out, _ = _main(ro, "interventions", "--json", capsys=capsys)
        assert code == 0 and json.loads(out) == []
        code, out, _ = _main(ro, "export", run_id, "--format", "json", capsys=capsys)
        assert code == 0 and run_id in out
        code, out, err = _main(ro, "runs", capsys=capsys)
        assert code == 0 and run_id in out and "Traceback" not in err
        code, out, err = _main(ro, "cancel", run_id, capsys=capsys)
        assert code == 1
        assert f"the home {ro} is not writable" in err
        assert "point --home/ORCHESTRATOR_HOME at a writable folder" in err
    # The same from a fresh process, where nothing was set up before: no traceback, one line.
    with read_only_view(home, tmp_path / "ro2") as ro:
        proc = cli(ro, "runs")
        assert proc.returncode == 0 and run_id in proc.stdout, proc.stderr
        assert proc.stderr == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the bind mount covers it")
def test_read_commands_work_on_a_chmod_read_only_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_id = _store_with_run(home)
    for p in [home, *home.iterdir()]:
        p.chmod(0o500 if p.is_dir() else 0o400)
    try:
        assert [r["id"] for r in cli_json(home, "runs")] == [run_id]
        refused = cli(home, "cancel", run_id)
        assert refused.returncode == 1 and "is not writable" in refused.stderr
    finally:
        for p in [home, *home.iterdir()]:
            p.chmod(0o700 if p.is_dir() else 0o600)


# ---- damaged database ----------------------------------------------------------------------------


def test_a_truncated_database_says_it_is_damaged_and_doctor_fix_recovers_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    run_id = _store_with_run(home)
    db = home / "orchestrator.db"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size - 4096)  # the last page, as a crash on a full disk can leave
    code, _, err = _main(home, "runs", capsys=capsys)
    assert code == 1
    assert f"the state database {db} is damaged" in err
    assert "orchestrator doctor --fix" in err
    assert "check the path and its permissions" not in err

    code, out, _ = _main(home, "doctor", "--json", capsys=capsys)
    assert code == 1 and json.loads(out)["database"]["damaged"] is True
    code, out, err = _main(home, "doctor", "--fix", capsys=capsys)
    assert code == 0, out + err
    assert "recover the database into a new file" in out
    assert [p.name for p in home.glob("orchestrator.db.damaged-*")], list(home.iterdir())
    code, out, _ = _main(home, "runs", "--json", capsys=capsys)
    assert [r["id"] for r in json.loads(out)] == [run_id]
    assert json.loads(out)[0]["error"] == "it broke"


def test_a_garbage_header_says_the_file_is_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    run_id = _store_with_run(home)
    with open(home / "orchestrator.db", "r+b") as f:
        f.write(b"this is not a database at all")
    code, _, err = _main(home, "show", run_id, capsys=capsys)
    assert code == 1
    assert "is damaged (file is not a database)" in err
    assert "Traceback" not in err
    assert _main(home, "doctor", "--fix", capsys=capsys)[0] == 0
    code, out, _ = _main(home, "show", run_id, "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["id"] == run_id


# ---- disk full -----------------------------------------------------------------------------------


def test_disk_full_from_sqlite_git_or_a_file_is_one_error(tmp_path: Path) -> None:
    errors: list[BaseException] = [
        sqlite3.OperationalError("database or disk is full"),
        OSError(28, "No space left on device"),
        GitError("git commit failed in /w: fatal: unable to write file: No space left on device"),
        StateError("write failed"),
    ]
    errors[3].__cause__ = errors[0]
    assert [is_disk_full(e) for e in errors] == [True, True, True, True]
    assert not is_disk_full(OSError(13, "Permission denied"))
    err = disk_full_error(errors[2], [tmp_path], "r123")
    assert isinstance(err, DiskFullError)
    assert f"free space in {tmp_path}, then `orchestrator resume r123`" in str(err)


@ROOT_ONLY
def test_a_run_that_fills_the_disk_stops_with_the_hint_and_resumes_after_freeing_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = small_repo(tmp_path / "repo")
    phases = [plan_phase("p1"), plan_phase("p2", ["p1"])]
    edits = {"p1": new_file_edit("a.txt"), "p2": new_file_edit("b.txt")}
    cassette = cassette_file(tmp_path / "c.jsonl", phases, edits)
    run = ["run", "two phases", "--repo", str(repo), "--headless", "--yes"]
    run += ["--provider", "replay", "--replay", str(cassette)]
    monkeypatch.setenv("ORCHESTRATOR__VERIFICATION__TEST", '["true"]')
    monkeypatch.setenv("ORCHESTRATOR__MODELS__EMBEDDER", "hashing-256")
    with mounted("-t", "tmpfs", "-o", "size=8m", "tmpfs", target=tmp_path / "small") as small:
        home = small / "home"
        assert _main(home, "runs", capsys=capsys)[0] == 0  # makes the home and its reserve
        assert (home / RESERVE_NAME).stat().st_size > 0
        filler = small / "filler"
        filler.write_bytes(b"\0" * max(shutil.disk_usage(small).free - 96 * 1024, 0))
        code, out, err = _main(home, *run, capsys=capsys)
        assert code == 1, out + err
        run_id = out.splitlines()[0].split()[1]
        assert f"then `orchestrator resume {run_id}`" in err  # printed as well as stored
        code, out, _ = _main(home, "show", run_id, "--json", capsys=capsys)
        doc = json.loads(out)
        assert "the disk is full" in (doc["error"] or ""), doc["error"]
        assert f"free space in {home}" in doc["error"]
        assert f"then `orchestrator resume {run_id}`" in doc["error"]
        assert doc["status"] == "interrupted"
        filler.unlink()
        code, out, err = _main(home, "resume", run_id, "--headless", "--yes", capsys=capsys)
        assert code == 0, out + err
        code, out, _ = _main(home, "show", run_id, "--json", capsys=capsys)
        assert json.loads(out)["status"] == "completed"


# ---- WAL checkpoint ------------------------------------------------------------------------------


def test_the_wal_is_checkpointed_during_a_run_not_only_at_the_end(tmp_path: Path) -> None:
    db_path = tmp_path / "orchestrator.db"

    async def write_many() -> None:
        async with await StateStore.open(db_path) as store:
            run = await store.create_run("t", tmp_path, {})
            for i in range(250):
                await store.set_run_metadata(run.id, step=i)
            # Before close (which checkpoints anyway), the database file alone holds most writes.
            copy = tmp_path / "copy.db"
            shutil.copyfile(db_path, copy)
            with closing(sqlite3.connect(copy)) as db:
                rows = db.execute("SELECT metadata FROM runs").fetchall()
            assert rows, "the database file holds no run: nothing was checkpointed"
            assert json.loads(rows[0][0])["step"] >= 150, rows

    asyncio.run(write_many())


# ---- clean ---------------------------------------------------------------------------------------


def test_clean_removes_every_worktree_branch_index_and_empty_folder_of_a_many_phase_run(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo")
    paths = Paths(home)

    async def scenario() -> None:
        async with await Engine.open(paths) as engine:
            run_id = await finished_run_with_phases(paths, engine.store, repo, 50)
            assert len(list(paths.indexes.glob("*/*/catalog.sqlite"))) == 50
            assert await engine.clean() == [run_id]
            assert (await engine.get_run(run_id)).metadata["cleaned"] is True

    asyncio.run(scenario())
    assert git(repo, "branch", "--list", "orchestrator/*") == ""
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert list(paths.worktrees.iterdir()) == []
    assert list(paths.indexes.glob("*/*/catalog.sqlite")) == []
    assert list(paths.reports.iterdir()) == []
    assert run_git(git_cmd(repo), "branch", "--show-current") == "main"


def test_untrue_names_what_a_stopped_run_still_claims(tmp_path: Path) -> None:
    db_path = tmp_path / "orchestrator.db"

    async def make() -> None:
        async with await StateStore.open(db_path) as store:
            run = await store.create_run("t", tmp_path, {})
            (phase,) = await store.save_plan(
                run.id,
                [{"id": "a", "name": "a", "description": "", "dependencies": []}],
                1,
            )
            await store.update_phase_status(phase.id, "in_progress")
            await store.update_run_status(run.id, RunStatus.FAILED, error=None)

    asyncio.run(make())
    found = untrue(db_path)
    assert any("phase a in_progress" in p for p in found), found
    assert any("failed without an error" in p for p in found), found


# ---- doctor --------------------------------------------------------------------------------------


def test_doctor_reports_then_fixes_stranded_runs_and_orphans_but_never_a_foreign_branch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo")
    paths = Paths(home)

    async def make() -> tuple[str, str]:
        async with await Engine.open(paths) as engine:
            kept = await engine.store.create_run("kept", repo, {})
            await engine.store.set_run_git(kept.id, None, f"orchestrator/{kept.id}", None)
            await engine.store.update_run_status(kept.id, RunStatus.EXECUTING)  # no live owner
            return kept.id, (await engine.store.create_run("never started", repo, {})).id

    stranded_id, pending_id = asyncio.run(make())
    for branch in (f"orchestrator/{stranded_id}", "orchestrator/rgone", "orchestrator/rgone--p1"):
        git(repo, "branch", branch)
    git(repo, "branch", "feature/mine")
    (paths.worktrees / "rgone" / "p1").mkdir(parents=True)
    index = paths.indexes / "gone-0123456789" / "hashing-256"
    index.mkdir(parents=True)
    with closing(sqlite3.connect(index / "catalog.sqlite")) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('root', ?)", (str(tmp_path / "vanished"),))
        db.commit()

    code, out, _ = _main(home, "doctor", "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == 1
    assert doc["database"]["integrity"] == ["ok"] and doc["healthy"] is False
    assert doc["stranded_runs"] == [stranded_id]  # the never-started run is not stranded
    assert doc["orphan_worktrees"] == [str(paths.worktrees / "rgone")]
    assert sorted(doc["orphan_branches"]) == [
        f"{repo}:orchestrator/rgone",
        f"{repo}:orchestrator/rgone--p1",
    ]
    assert doc["orphan_indexes"] == [str(tmp_path / "vanished")]

    code, out, err = _main(home, "doctor", "--fix", capsys=capsys)
    assert code == 0, out + err
    will = out.split("doctor --fix will:")[1].split("done:")[0]
    assert f"record the stranded run as interrupted: {stranded_id}" in will
    assert "remove the orphan worktree folder" in will and "delete orphan branch(es)" in will
    code, out, _ = _main(home, "show", stranded_id, "--json", capsys=capsys)
    assert json.loads(out)["status"] == "interrupted"
    code, out, _ = _main(home, "show", pending_id, "--json", capsys=capsys)
    assert json.loads(out)["status"] == "pending"
    assert git(repo, "branch", "--format=%(refname:short)").split() == [
        "feature/mine",
        "main",
        f"orchestrator/{stranded_id}",
    ]
    assert not (paths.worktrees / "rgone").exists() and not index.exists()
    assert _main(home, "doctor", capsys=capsys)[0] == 0
