"""Worktrees and branches of a run: create idempotently, merge phase branches, resolve conflicts, apply, remove."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import GitError, MergeConflictError, RepoError
from core.git.repo import (
    git_cmd,
    git_status,
    identity_env,
    is_ancestor,
    rev_parse,
    run_git,
    status_paths,
)
from core.removal import remove_trees

# A line that starts a or ends a conflict hunk as git writes them.
_MARKER = re.compile(rb"^(<{7}|>{7})( |$)", re.MULTILINE)
_MAX_LISTED = 10
_BRANCHES_PER_CALL = 200  # names per `git branch -D`, well under any command-line limit


def _same_path(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name the same place once symlinks are resolved."""
    return os.path.realpath(a) == os.path.realpath(b)


def _common_dir(repo_path: Path) -> Path:
    """The repository's shared git folder (where `worktrees/` lives), also from a linked worktree."""
    dot_git = repo_path / ".git"
    if dot_git.is_dir():
        return dot_git
    found = Path(run_git(git_cmd(repo_path), "rev-parse", "--git-common-dir"))
    return found if found.is_absolute() else repo_path / found


@contextmanager
def worktrees_locked(repo_path: Path) -> Iterator[None]:
    """Our processes and threads change and read a repository's worktrees one at a time: while git
    adds a worktree it reads every other one's files, and fails on one that another `worktree add`
    has half made ("failed to read .git/worktrees/X/commondir"). An flock on the shared git folder
    itself, so nothing is written into the user's repository; not reentrant (one per call chain)."""
    fd = os.open(_common_dir(repo_path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def list_worktrees(repo_path: Path) -> list[dict[str, str]]:
    """Registered worktrees as dicts with "worktree", "HEAD" and (when on a branch) "branch" keys."""
    with worktrees_locked(repo_path):
        return _list_worktrees(repo_path)


def _list_worktrees(repo_path: Path) -> list[dict[str, str]]:
    out = run_git(git_cmd(repo_path), "worktree", "list", "--porcelain", strip=False)
    entries: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in out.splitlines():
        if not line.strip():
            if current:
                entries.append(current)
            current = {}
            continue
        key, _, value = line.partition(" ")
        current[key] = value
    if current:
        entries.append(current)
    return entries


def prune_worktrees(repo_path: Path) -> None:
    """Forget registrations of worktrees whose folders are gone."""
    with worktrees_locked(repo_path):
        run_git(git_cmd(repo_path), "worktree", "prune")


def _branch_exists(repo_path: Path, branch: str) -> bool:
    """Whether refs/heads/<branch> exists."""
    return (
        git_status(git_cmd(repo_path), "rev-parse", "-q", "--verify", f"refs/heads/{branch}") == 0
    )


def create_worktree(repo_path: Path, worktree_path: Path, branch: str, start_point: str) -> None:
    """Make sure `worktree_path` is a worktree on `branch`, creating the branch at start_point only when it is new."""
    with worktrees_locked(repo_path):
        _create_worktree(repo_path, worktree_path, branch, start_point)


def _create_worktree(repo_path: Path, worktree_path: Path, branch: str, start_point: str) -> None:
    g = git_cmd(repo_path)
    for entry in _list_worktrees(repo_path):
        if _same_path(entry.get("worktree", ""), worktree_path):
            if not (worktree_path / ".git").exists():
                run_git(g, "worktree", "prune")  # registered, but its folder is gone
                break
            if entry.get("branch") == f"refs/heads/{branch}":
                return
            raise GitError(
                f"{worktree_path} is already a worktree on {entry.get('branch', 'a detached HEAD')}, "
                f"not on {branch}; remove it (orchestrator clean) and try again."
            )
    if worktree_path.exists():
        if (worktree_path / ".git").is_file():
            # A leftover of a worktree whose registration is gone: its work lives on in the branch.
            shutil.rmtree(worktree_path)
        elif any(worktree_path.iterdir()):
            raise GitError(
                f"{worktree_path} exists and is not empty, so no worktree can be made there; "
                "move it away and try again."
            )
    worktree_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_git(g, *_add_args(repo_path, worktree_path, branch, start_point))
    except GitError:
        # A stale registration (its folder deleted) blocks the branch: prune, then try once more,
        # without `-b` when the failed attempt got as far as making the branch.
        run_git(g, "worktree", "prune")
        run_git(g, *_add_args(repo_path, worktree_path, branch, start_point))


def _add_args(repo_path: Path, worktree_path: Path, branch: str, start_point: str) -> list[str]:
    """`git worktree add` arguments: check out `branch`, made at start_point when it is new."""
    if _branch_exists(repo_path, branch):
        return ["worktree", "add", str(worktree_path), branch]
    return ["worktree", "add", "-b", branch, str(worktree_path), start_point]


def merge_in_progress(worktree: Path) -> bool:
    """Whether a merge has been started in the worktree and not committed or aborted."""
    return git_status(git_cmd(worktree), "rev-parse", "-q", "--verify", "MERGE_HEAD") == 0


def conflicted_files(worktree: Path) -> list[str]:
    """Paths git still marks as unmerged in the worktree."""
    out = run_git(git_cmd(worktree), "diff", "--name-only", "-z", "--diff-filter=U", strip=False)
    return sorted({p for p in out.split("\0") if p})


def _listing(files: list[str]) -> str:
    """Up to ten paths joined for a message, with a count of the rest."""
    shown = ", ".join(files[:_MAX_LISTED])
    return shown + (f" and {len(files) - _MAX_LISTED} more" if len(files) > _MAX_LISTED else "")


def merge_branch(
    worktree: Path, branch: str, message: str, author_name: str, author_email: str
) -> str:
    """Merge `branch` into the worktree's branch (fast-forward when possible); conflicts stay for a person to resolve."""
    g = git_cmd(worktree)
    if merge_in_progress(worktree):
        files = conflicted_files(worktree)
        raise MergeConflictError(
            f"a merge is already in progress in {worktree}"
            + (f" with conflicts in {_listing(files)}" if files else "")
            + "; resolve and finish it, or abort it, before merging again.",
            files,
        )
    if is_ancestor(worktree, branch, "HEAD"):
        return run_git(g, "rev-parse", "HEAD")
    env = identity_env(author_name, author_email)
    status, _out, err = g.execute(
        ["git", "merge", "--ff", "--no-edit", "-m", message, branch],
        env=env,
        with_extended_output=True,
        with_exceptions=False,
    )
    if status != 0:
        files = conflicted_files(worktree) if merge_in_progress(worktree) else []
        if files:
            raise MergeConflictError(
                f"merging {branch} into {worktree} conflicted in {_listing(files)}; "
                "resolve the files in that worktree, then approve to finish the merge (or reject to abort).",
                files,
            )
        if merge_in_progress(worktree):
            git_status(g, "merge", "--abort")
        raise GitError(f"git merge {branch} failed in {worktree}: {str(err).strip()}")
    return run_git(g, "rev-parse", "HEAD")


def _files_with_markers(worktree: Path, paths: list[str]) -> list[str]:
    """Those of `paths` whose working copy still holds conflict marker lines."""
    found = []
    for rel in paths:
        p = worktree / rel
        try:
            if p.is_file() and _MARKER.search(p.read_bytes()):
                found.append(rel)
        except OSError:
            continue
    return found


def finish_merge(worktree: Path, message: str, author_name: str, author_email: str) -> str:
    """Commit a merge a person resolved, refusing while conflict markers remain; HEAD when no merge is pending."""
    g = git_cmd(worktree)
    if not merge_in_progress(worktree):
        return run_git(g, "rev-parse", "HEAD")
    unmerged = conflicted_files(worktree)
    touched = run_git(g, "diff", "--name-only", "-z", "HEAD", strip=False).split("\0")
    candidates = sorted({p for p in [*unmerged, *touched] if p})
    remaining = _files_with_markers(worktree, candidates)
    if remaining:
        raise GitError(
            f"conflict markers remain in {_listing(remaining)} in {worktree}; "
            "edit those files until no <<<<<<< or >>>>>>> lines are left, then try again.",
        )
    run_git(g, "add", "-A")
    still = conflicted_files(worktree)
    if still:
        raise GitError(
            f"unmerged paths remain in {worktree}: {_listing(still)}; resolve them first."
        )
    run_git(g, "commit", "--no-edit", "-m", message, env=identity_env(author_name, author_email))
    return run_git(g, "rev-parse", "HEAD")


def abort_merge(worktree: Path) -> None:
    """Abandon a merge in progress, restoring the worktree to its HEAD before the merge."""
    if merge_in_progress(worktree):
        run_git(git_cmd(worktree), "merge", "--abort")


def remove_worktree(
    repo_path: Path, worktree_path: Path, branch: str | None, delete_branch: bool
) -> None:
    """Remove a worktree (and optionally its branch), tolerating either being gone already."""
    g = git_cmd(repo_path)
    with worktrees_locked(repo_path):
        registered = any(
            _same_path(e.get("worktree", ""), worktree_path) for e in _list_worktrees(repo_path)
        )
        if registered:
            run_git(g, "worktree", "remove", "--force", "--force", str(worktree_path))
        elif worktree_path.exists() and (worktree_path / ".git").is_file():
            shutil.rmtree(worktree_path)
        run_git(g, "worktree", "prune")
        if delete_branch and branch and _branch_exists(repo_path, branch):
            run_git(g, "branch", "-D", branch)


def apply_branch(repo_path: Path, branch: str, message: str | None = None) -> str:
    """Merge a finished run's branch into the user's current branch in their own checkout; HEAD afterwards."""
    g = git_cmd(repo_path)
    if rev_parse(repo_path, branch) is None:
        raise RepoError(
            f"branch {branch} does not exist in {repo_path}; the run's work may have been cleaned."
        )
    if merge_in_progress(repo_path):
        raise RepoError(f"{repo_path} is in the middle of a merge; finish or abort it first.")
    if git_status(g, "symbolic-ref", "-q", "HEAD") != 0:
        raise RepoError(
            f"{repo_path} has a detached HEAD; check out the branch to apply the run to first."
        )
    dirty = status_paths(g)
    if dirty:
        raise RepoError(
            f"{repo_path} has uncommitted changes ({_listing(dirty)}); commit or stash first, then apply again."
        )
    if is_ancestor(repo_path, branch, "HEAD"):
        return run_git(g, "rev-parse", "HEAD")
    msg = message or f"Apply orchestrator run branch {branch}"
    status, _out, err = g.execute(
        ["git", "merge", "--ff", "--no-edit", "-m", msg, branch],
        with_extended_output=True,
        with_exceptions=False,
    )
    if status != 0:
        files = conflicted_files(repo_path) if merge_in_progress(repo_path) else []
        if merge_in_progress(repo_path):
            run_git(g, "merge", "--abort")
        if files:
            raise MergeConflictError(
                f"applying {branch} conflicts with your branch in {_listing(files)}; nothing was changed. "
                f"To resolve by hand: `git merge {branch}`, fix the files, `git add` them and `git commit`.",
                files,
            )
        raise GitError(f"git merge {branch} failed in {repo_path}: {str(err).strip()}")
    return run_git(g, "rev-parse", "HEAD")


def _admin_folder(common_dir: Path, worktree: Path) -> Path | None:
    """The folder under `<common_dir>/worktrees/` that registers `worktree`, when the worktree's
    `.git` file names one there and that folder's `gitdir` names the worktree back; else None."""
    try:
        text = (worktree / ".git").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    admin = Path(text.removeprefix("gitdir:").strip())
    if not admin.is_absolute():
        admin = worktree / admin
    if not _same_path(admin.parent, common_dir / "worktrees"):
        return None
    try:
        back = (admin / "gitdir").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return admin if _same_path(back, worktree / ".git") else None


def remove_worktrees(repo_path: Path, folders: list[Path], branches: list[str]) -> None:
    """Remove many worktrees and branches at once: delete the folders, prune their registrations
    once, and delete the branches that exist in a few `git branch -D` calls (one git call per
    worktree made cleaning a 500-phase run take minutes). Each worktree's administrative folder
    (`<git dir>/worktrees/<id>`, named by the worktree's `.git` file and pointing back at it) is
    deleted together with the folder, so `git worktree prune` has nothing left but to check."""
    g = git_cmd(repo_path)
    common = repo_path / run_git(g, "rev-parse", "--git-common-dir")  # relative to the repo
    admins = [a for f in folders if (a := _admin_folder(common, f)) is not None]
    remove_trees(folders)
    refused: list[str] = []
    with worktrees_locked(repo_path):  # git reads every registration: none half deleted
        remove_trees(admins)
        run_git(g, "worktree", "prune")
        wanted = set(branches)
        refs = run_git(g, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/")
        existing = [name for name in refs.split("\n") if name in wanted]
        for start in range(0, len(existing), _BRANCHES_PER_CALL):
            chunk = existing[start : start + _BRANCHES_PER_CALL]
            if git_status(g, "branch", "-D", "--", *chunk) != 0:
                # git deletes what it can and refuses a branch checked out somewhere: say which.
                refused += [b for b in chunk if _branch_exists(repo_path, b)]
    if refused:
        raise GitError(
            f"could not delete {_listing(refused)} in {repo_path}: checked out in a worktree "
            "that is not the orchestrator's; switch that checkout to another branch and clean again"
        )
