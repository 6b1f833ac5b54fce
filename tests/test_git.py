"""Tests of core.git against real repositories made in tmp_path with the git CLI."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from core.errors import GitError, MergeConflictError, RepoError
from core.git.repo import (
    changed_files,
    commit_all,
    diff_of_commit,
    ensure_clean,
    find_commit_with_trailers,
    head_commit_of,
    init_repo_with_commit,
    is_ancestor,
    open_repo,
    reset_hard,
)
from core.git.worktrees import (
    abort_merge,
    apply_branch,
    conflicted_files,
    create_worktree,
    finish_merge,
    list_worktrees,
    merge_branch,
    merge_in_progress,
    remove_worktree,
)

AUTHOR = ("Orchestrator", "orchestrator@example.invalid")


def sh(cwd: Path, *args: str) -> str:
    """Run git in cwd and return its stripped stdout, failing the test on error."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """A repository on main with one commit of `files` and a repo-local identity."""
    root.mkdir(parents=True, exist_ok=True)
    sh(root, "init", "-q", "-b", "main")
    sh(root, "config", "user.name", "Test User")
    sh(root, "config", "user.email", "test@example.invalid")
    for rel, text in (files or {"README.md": "hello\n", "src/app.py": "x = 1\n"}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    sh(root, "add", "-A")
    sh(root, "commit", "-q", "-m", "init")
    return root


def snapshot(repo: Path) -> tuple[str, str, str, dict[str, str]]:
    """The user's branch, HEAD, status and file contents, to prove worktree operations leave them alone."""
    files = {
        str(p.relative_to(repo)): p.read_text()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return (
        sh(repo, "branch", "--show-current"),
        sh(repo, "rev-parse", "HEAD"),
        sh(repo, "status", "--porcelain"),
        files,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "user")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- open_repo / ensure_clean -------------------------------------------------------------


def test_open_repo_errors(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="does not exist"):
        open_repo(tmp_path / "missing")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(RepoError, match="not a directory"):
        open_repo(a_file)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepoError, match="git init"):
        open_repo(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    sh(empty, "init", "-q", "-b", "main")
    with pytest.raises(RepoError, match="no commits"):
        open_repo(empty)


def test_open_repo_returns_toplevel(repo: Path) -> None:
    r = open_repo(repo / "src")
    try:
        assert Path(r.working_tree_dir).resolve() == repo.resolve()
        assert head_commit_of(repo / "src") == sh(repo, "rev-parse", "HEAD")
        assert len(head_commit_of(repo)) == 40
    finally:
        r.close()


def test_ensure_clean(repo: Path) -> None:
    r = open_repo(repo)
    try:
        ensure_clean(r, allow_dirty=False)
        write(repo / ".gitignore", "build/\n")
        sh(repo, "add", ".gitignore")
        sh(repo, "commit", "-q", "-m", "ignore")
        write(repo / "build" / "out.o", "ignored")
        ensure_clean(r, allow_dirty=False)  # ignored files do not count

        (repo / "README.md").write_text("changed\n")
        write(repo / "new.txt", "untracked")
        write(repo / "staged.txt", "staged")
        sh(repo, "add", "staged.txt")
        with pytest.raises(RepoError) as info:
            ensure_clean(r, allow_dirty=False)
        msg = str(info.value)
        for path in ("README.md", "new.txt", "staged.txt"):
            assert path in msg
        assert "--allow-dirty" in msg and "commit or stash" in msg
        ensure_clean(r, allow_dirty=True)
    finally:
        r.close()


def test_ensure_clean_lists_at_most_ten(repo: Path) -> None:
    for i in range(13):
        write(repo / f"f{i:02}.txt", "x")
    r = open_repo(repo)
    try:
        with pytest.raises(RepoError, match="and 3 more"):
            ensure_clean(r, allow_dirty=False)
    finally:
        r.close()


# --- worktrees and commits ------------------------------------------------------------------


def test_create_worktree_idempotent_and_recovers(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    base = sh(repo, "rev-parse", "HEAD")
    wt = tmp_path / "home" / "wt" / "run1"
    create_worktree(repo, wt, "orchestrator/run1", base)
    assert (wt / "README.md").read_text() == "hello\n"
    assert sh(wt, "branch", "--show-current") == "orchestrator/run1"
    create_worktree(repo, wt, "orchestrator/run1", base)  # second call: nothing to do
    assert (
        sum(1 for e in list_worktrees(repo) if e.get("branch") == "refs/heads/orchestrator/run1")
        == 1
    )

    # Work committed on the branch, then the worktree directory vanishes (crash, manual rm).
    write(wt / "feature.txt", "feature\n")
    sha = commit_all(wt, "add feature", {}, *AUTHOR)
    subprocess.run(["rm", "-rf", str(wt)], check=True)
    create_worktree(repo, wt, "orchestrator/run1", base)
    assert sh(wt, "rev-parse", "HEAD") == sha  # re-attached to the existing branch, work kept
    assert (wt / "feature.txt").read_text() == "feature\n"

    # A stale directory whose registration is gone is replaced by a fresh checkout of the branch.
    registration = Path(sh(wt, "rev-parse", "--absolute-git-dir"))
    subprocess.run(["rm", "-rf", str(registration)], check=True)
    assert (wt / ".git").is_file()
    create_worktree(repo, wt, "orchestrator/run1", base)
    assert sh(wt, "rev-parse", "HEAD") == sha

    with pytest.raises(GitError, match="already a worktree"):
        create_worktree(repo, wt, "orchestrator/other", base)
    assert snapshot(repo) == before


def test_create_worktree_git_error_has_stderr(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="no-such-ref|invalid reference|not a valid"):
        create_worktree(repo, tmp_path / "wt", "b", "no-such-ref")


def test_commit_all_with_trailers_and_nothing_to_commit(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    wt = tmp_path / "wt"
    create_worktree(repo, wt, "phase/1", "main")
    assert commit_all(wt, "nothing", {"Orchestrator-Phase": "p1"}, *AUTHOR) is None

    write(wt / "src" / "new.py", "y = 2\n")
    (wt / "README.md").unlink()
    assert sorted(changed_files(wt)) == ["README.md", "src/new.py"]
    trailers = {"Orchestrator-Run": "run-1", "Orchestrator-Phase": "p1"}
    sha = commit_all(wt, "phase 1: add new.py", trailers, *AUTHOR)
    assert sha is not None and len(sha) == 40
    assert changed_files(wt) == []
    body = sh(wt, "log", "-1", "--format=%B")
    assert body == "phase 1: add new.py\n\nOrchestrator-Run: run-1\nOrchestrator-Phase: p1"
    assert sh(wt, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Orchestrator <orchestrator@example.invalid>|Orchestrator <orchestrator@example.invalid>"
    )
    assert "src/new.py" in diff_of_commit(repo, sha)
    assert commit_all(wt, "again", trailers, *AUTHOR) is None
    assert snapshot(repo) == before


def test_post_commit_hook_runs(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\ngit rev-parse HEAD > '{marker}'\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    wt = tmp_path / "wt"
    create_worktree(repo, wt, "phase/hook", "main")
    write(wt / "a.txt", "a")
    sha = commit_all(wt, "hooked", {}, *AUTHOR)
    assert marker.read_text().strip() == sha


def test_find_and_count_commits_with_trailers(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    create_worktree(repo, wt, "run/x", "main")
    shas = []
    for i in range(3):
        write(wt / f"f{i}.txt", str(i))
        shas.append(
            commit_all(
                wt, f"phase {i}", {"Orchestrator-Run": "x", "Orchestrator-Phase": f"p{i}"}, *AUTHOR
            )
        )
    assert (
        find_commit_with_trailers(wt, "HEAD", {"Orchestrator-Phase": "p1", "Orchestrator-Run": "x"})
        == shas[1]
    )
    assert find_commit_with_trailers(repo, "run/x", {"Orchestrator-Phase": "p2"}) == shas[2]
    assert (
        find_commit_with_trailers(wt, "HEAD", {"Orchestrator-Phase": "p1", "Orchestrator-Run": "y"})
        is None
    )
    assert (
        find_commit_with_trailers(wt, "HEAD", {"Orchestrator-Phase": "p"}) is None
    )  # exact lines only
    assert find_commit_with_trailers(repo, "no-such-branch", {"Orchestrator-Phase": "p1"}) is None


def test_reset_hard_and_history_helpers(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    base = sh(repo, "rev-parse", "HEAD")
    create_worktree(repo, wt, "p", base)
    write(wt / ".gitignore", "cache/\n")
    first = commit_all(wt, "ignore cache", {}, *AUTHOR)
    write(wt / "cache" / "keep.bin", "k")
    write(wt / "junk.txt", "j")
    (wt / "README.md").write_text("dirty\n")
    reset_hard(wt, first)
    assert changed_files(wt) == []
    assert not (wt / "junk.txt").exists()
    assert (wt / "cache" / "keep.bin").exists()  # ignored files survive
    assert is_ancestor(repo, base, first) and not is_ancestor(repo, first, base)
    with pytest.raises(GitError):
        is_ancestor(repo, "nope", base)


# --- merges -------------------------------------------------------------------------------------


def two_phases(
    repo: Path, tmp_path: Path, a_text: str, b_text: str, same_file: bool
) -> tuple[Path, str, str]:
    """A run worktree plus two phase branches forked from it, each with one commit."""
    run_wt = tmp_path / "run"
    create_worktree(repo, run_wt, "run/1", "main")
    for name, text in (("a", a_text), ("b", b_text)):
        wt = tmp_path / f"phase-{name}"
        create_worktree(repo, wt, f"phase/{name}", "run/1")
        target = "README.md" if same_file else f"{name}.txt"
        write(wt / target, text)
        commit_all(wt, f"phase {name}", {"Orchestrator-Phase": name}, *AUTHOR)
    return run_wt, "phase/a", "phase/b"


def test_merge_fast_forward_then_merge_commit_and_idempotent(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    run_wt, a, b = two_phases(repo, tmp_path, "A\n", "B\n", same_file=False)
    a_sha = sh(repo, "rev-parse", a)
    head = merge_branch(run_wt, a, "merge a", *AUTHOR)
    assert head == a_sha  # fast-forward: no new commit
    head2 = merge_branch(run_wt, b, "merge phase b", *AUTHOR)
    parents = sh(run_wt, "log", "-1", "--format=%P").split()
    assert len(parents) == 2 and parents[0] == a_sha
    assert sh(run_wt, "log", "-1", "--format=%s") == "merge phase b"
    assert (run_wt / "a.txt").exists() and (run_wt / "b.txt").exists()
    assert merge_branch(run_wt, b, "merge phase b", *AUTHOR) == head2  # resume: nothing to do
    assert merge_branch(run_wt, a, "merge a", *AUTHOR) == head2
    assert snapshot(repo) == before


def test_merge_conflict_then_finish(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    run_wt, a, b = two_phases(repo, tmp_path, "from A\n", "from B\n", same_file=True)
    merge_branch(run_wt, a, "merge a", *AUTHOR)
    with pytest.raises(MergeConflictError) as info:
        merge_branch(run_wt, b, "merge b", *AUTHOR)
    assert info.value.files == ["README.md"]
    assert merge_in_progress(run_wt)
    assert conflicted_files(run_wt) == ["README.md"]
    with pytest.raises(MergeConflictError, match="already in progress"):
        merge_branch(run_wt, b, "merge b", *AUTHOR)
    with pytest.raises(GitError, match="conflict markers remain in README.md"):
        finish_merge(run_wt, "merge b", *AUTHOR)

    (run_wt / "README.md").write_text("from A and B\n")  # resolved by a person, not yet added
    head = finish_merge(run_wt, "merge b (resolved)", *AUTHOR)
    assert not merge_in_progress(run_wt)
    assert len(sh(run_wt, "log", "-1", "--format=%P").split()) == 2
    assert sh(run_wt, "show", "HEAD:README.md") == "from A and B"
    assert finish_merge(run_wt, "again", *AUTHOR) == head
    assert merge_branch(run_wt, b, "merge b", *AUTHOR) == head
    assert snapshot(repo) == before


def test_abort_merge(repo: Path, tmp_path: Path) -> None:
    run_wt, a, b = two_phases(repo, tmp_path, "x\n", "y\n", same_file=True)
    head = merge_branch(run_wt, a, "merge a", *AUTHOR)
    with pytest.raises(MergeConflictError):
        merge_branch(run_wt, b, "merge b", *AUTHOR)
    abort_merge(run_wt)
    assert not merge_in_progress(run_wt)
    assert sh(run_wt, "rev-parse", "HEAD") == head and changed_files(run_wt) == []
    abort_merge(run_wt)  # no merge: nothing happens


# --- apply and remove -----------------------------------------------------------------------------


def test_apply_branch_fast_forward_and_merge(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "run"
    create_worktree(repo, wt, "run/ok", "main")
    write(wt / "feature.txt", "feature\n")
    sha = commit_all(wt, "feature", {}, *AUTHOR)
    assert apply_branch(repo, "run/ok") == sha
    assert sh(repo, "branch", "--show-current") == "main"
    assert (repo / "feature.txt").read_text() == "feature\n"
    assert apply_branch(repo, "run/ok") == sha  # already applied

    # The user moved on meanwhile: a real merge commit.
    wt2 = tmp_path / "run2"
    create_worktree(repo, wt2, "run/two", "main")
    write(wt2 / "two.txt", "2\n")
    commit_all(wt2, "two", {}, *AUTHOR)
    write(repo / "mine.txt", "mine\n")
    sh(repo, "add", "mine.txt")
    sh(repo, "commit", "-q", "-m", "user work")
    head = apply_branch(repo, "run/two")
    assert len(sh(repo, "log", "-1", "--format=%P").split()) == 2
    assert sh(repo, "log", "-1", "--format=%s") == "Apply orchestrator run branch run/two"
    assert head == sh(repo, "rev-parse", "HEAD")
    assert (repo / "two.txt").exists() and (repo / "mine.txt").exists()


def test_apply_branch_refuses_dirty_and_conflicts(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "run"
    create_worktree(repo, wt, "run/c", "main")
    (wt / "README.md").write_text("run version\n")
    commit_all(wt, "change readme", {}, *AUTHOR)

    (repo / "README.md").write_text("uncommitted\n")
    with pytest.raises(RepoError, match="commit or stash first"):
        apply_branch(repo, "run/c")
    assert (repo / "README.md").read_text() == "uncommitted\n"

    sh(repo, "commit", "-q", "-am", "user readme")
    before = snapshot(repo)
    with pytest.raises(MergeConflictError) as info:
        apply_branch(repo, "run/c")
    assert info.value.files == ["README.md"]
    assert "git merge run/c" in str(info.value)
    assert not merge_in_progress(repo)
    assert snapshot(repo) == before
    with pytest.raises(RepoError, match="does not exist"):
        apply_branch(repo, "run/missing")


def test_remove_worktree(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    wt = tmp_path / "wt"
    create_worktree(repo, wt, "phase/rm", "main")
    write(wt / "dirty.txt", "uncommitted")
    remove_worktree(repo, wt, "phase/rm", delete_branch=False)
    assert not wt.exists()
    assert sh(repo, "branch", "--list", "phase/rm") != ""
    remove_worktree(repo, wt, "phase/rm", delete_branch=True)  # worktree already gone: fine
    assert sh(repo, "branch", "--list", "phase/rm") == ""
    remove_worktree(repo, wt, "phase/rm", delete_branch=True)  # both gone: still fine
    assert all(not e["worktree"].endswith("/wt") for e in list_worktrees(repo))
    assert snapshot(repo) == before


def test_init_repo_with_commit_and_head_commit_of(tmp_path: Path) -> None:
    target = tmp_path / "sample"
    write(target / "pkg" / "mod.py", "VALUE = 1\n")
    sha = init_repo_with_commit(target, "Sample project")
    assert head_commit_of(target) == sha
    assert sh(target, "branch", "--show-current") == "main"
    assert sh(target, "status", "--porcelain") == ""
    assert sh(target, "log", "-1", "--format=%s") == "Sample project"
    assert sh(target, "show", "HEAD:pkg/mod.py") == "VALUE = 1"
