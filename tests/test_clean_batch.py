"""`clean` removes a many-phase run's worktrees, their git registrations, branches and index
folders in batches, and nothing that is not the run's."""

from __future__ import annotations

import asyncio
from pathlib import Path

from config.paths import Paths
from core.engine import Engine
from core.git.worktrees import create_worktree, remove_worktrees
from core.removal import remove_empty_dirs
from tests.conftest import git, make_repo
from tests.faultkit import finished_run_with_phases


def test_clean_keeps_the_users_own_worktree_and_branch_and_makes_no_vector_store(
    tmp_path: Path,
) -> None:
    home, repo = tmp_path / "home", make_repo(tmp_path / "repo")
    paths = Paths(home)
    mine = tmp_path / "my-checkout"
    git(repo, "worktree", "add", "-q", "-b", "feature/mine", str(mine))

    async def scenario() -> str:
        async with await Engine.open(paths) as engine:
            run_id = await finished_run_with_phases(paths, engine.store, repo, 12)
            assert await engine.clean() == [run_id]
            return run_id

    asyncio.run(scenario())
    listed = git(repo, "worktree", "list", "--porcelain")
    assert listed.count("worktree ") == 2 and f"worktree {mine}" in listed
    assert git(repo, "branch", "--list", "orchestrator/*") == ""
    assert "feature/mine" in git(repo, "branch", "--list", "feature/mine")
    admin = Path(git(repo, "rev-parse", "--git-common-dir"))
    admin = admin if admin.is_absolute() else repo / admin
    assert [p.name for p in (admin / "worktrees").iterdir()] == ["my-checkout"]
    assert list(paths.indexes.glob("*/*/catalog.sqlite")) == []
    # Deleting the index folders of gone worktrees needs no vector store; none is made for it.
    assert not (paths.indexes / "chroma").exists()


def test_a_worktree_whose_git_file_names_another_registration_keeps_that_registration(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    ours, mine = tmp_path / "home" / "w1", tmp_path / "mine"
    create_worktree(repo, ours, "orchestrator/r1", head)
    git(repo, "worktree", "add", "-q", "-b", "feature/mine", str(mine))
    # Our folder's .git file now names the user's registration: it must not be deleted with it.
    (ours / ".git").write_text((mine / ".git").read_text())
    remove_worktrees(repo, [ours], ["orchestrator/r1"])
    assert not ours.exists()
    listed = git(repo, "worktree", "list", "--porcelain")
    assert f"worktree {mine}" in listed and git(repo, "-C", str(mine), "status", "--short") == ""
    assert git(repo, "branch", "--list", "orchestrator/*") == ""


def test_remove_empty_dirs_keeps_every_folder_that_holds_a_file(tmp_path: Path) -> None:
    top = tmp_path / "reports" / "r1"
    for i in range(20):
        (top / f"p{i:02d}-attempt-1" / "deep").mkdir(parents=True)
    (top / "p07-attempt-1" / "deep" / "report.json").write_text("{}")
    assert remove_empty_dirs(top) == 38  # 19 phase folders and their 19 "deep" ones; r1 stays
    assert [p.relative_to(top).as_posix() for p in sorted(top.rglob("*"))] == [
        "p07-attempt-1",
        "p07-attempt-1/deep",
        "p07-attempt-1/deep/report.json",
    ]
