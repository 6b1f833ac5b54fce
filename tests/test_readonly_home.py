"""A read-only home tells the truth: reads see every committed write, writers refuse cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from core.state import schema
from core.state.health import inspect_database
from tests.clirun import ROOT, cli, cli_env
from tests.conftest import make_repo
from tests.faultkit import run_only_in_the_wal
from tests.test_faults import ROOT_ONLY, _store_with_run, read_only_view


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to show that nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@ROOT_ONLY
@pytest.mark.parametrize(
    "args",
    [
        ("index", "{repo}"),
        ("search", "hello", "--repo", "{repo}"),
        ("verify", "{repo}"),
    ],
    ids=["index", "search", "verify"],
)
def test_index_search_and_verify_refuse_a_read_only_home_like_other_writers(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    _store_with_run(home)
    repo = make_repo(tmp_path / "repo", {"app.py": "def hello():\n    return 1\n"})
    before_home, before_repo = _tree(home), _tree(repo)
    with read_only_view(home, tmp_path / "ro") as ro:
        proc = cli(ro, *(a.format(repo=repo) for a in args))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"the home {ro} is not writable" in proc.stderr
    assert f"`orchestrator {args[0]}` needs to write there" in proc.stderr
    assert _tree(home) == before_home and _tree(repo) == before_repo
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""


_MIGRATE_AND_DIE = """
import os, sqlite3, sys
from core.state import schema

conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("BEGIN IMMEDIATE")
schema.migrate(conn)
conn.execute("COMMIT")
os._exit(0)  # every table is only in the -wal file
"""


def _in_subprocess(script: str, arg: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, str(arg)],
        cwd=ROOT,
        env=cli_env(arg),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return proc.stdout.strip()


@ROOT_ONLY
def test_a_read_only_home_shows_writes_that_are_only_in_the_wal_without_a_shm_file(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    first = _store_with_run(home)
    second = run_only_in_the_wal(home)
    before = _tree(home)
    with read_only_view(home, tmp_path / "ro") as ro:
        listed = cli(ro, "runs", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {r["id"] for r in json.loads(listed.stdout)} == {first, second}
        shown = cli(ro, "show", second, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["task"] == "only in the WAL"
    assert _tree(home) == before  # read through a private copy: the home is untouched
    assert not list(Path(tempfile.gettempdir()).glob("orchestrator-ro-*/orchestrator.db"))


@ROOT_ONLY
def test_doctor_on_a_read_only_home_reads_a_schema_that_is_only_in_the_wal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / "orchestrator.db"
    _in_subprocess(_MIGRATE_AND_DIE, db)
    Path(f"{db}-shm").unlink()
    with read_only_view(home, tmp_path / "ro") as ro:
        report = inspect_database(ro / "orchestrator.db")
    assert report.integrity == ["ok"]
    assert report.pending_migrations == [] and report.unknown_migrations == []
    assert report.applied_migrations == [name for name, _ in schema.MIGRATIONS]
