"""Repositories named by git URL: credentials kept out of what we store, a clone per home,
fetching and pushing the run branch.

A run on a URL stores the URL without credentials; this home keeps a clone of it under
`HOME/repos/<name>-<hash>` and works in worktrees there. Credentials a user wrote into the URL
live only in this process's memory and reach git through a credential helper given on its
command line (`-c credential.helper=...`) reading the environment, so neither the clone's
`.git/config` nor the database ever holds them; other processes use their own git credentials.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config.paths import Paths
from core.errors import GitError, InputError, PushError
from core.git.remote_url import Credentials, clean_url, is_url, split_credentials
from core.git.repo import git_cmd, git_status, reset_hard, rev_parse, run_git
from core.git.worktrees import worktrees_locked
from core.paths_safe import inside

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_CRED_USER = "ORCHESTRATOR_GIT_USERNAME"
_CRED_PASSWORD = "ORCHESTRATOR_GIT_PASSWORD"
# A credential helper that answers git's `get` with the two variables above (set only in the
# environment of the one git process that needs them).
_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo "username=${{{_CRED_USER}}}"; '
    f'echo "password=${{{_CRED_PASSWORD}}}"; }}; f'
)


# Credentials given in URLs to this process, by clean URL; never written anywhere.
_REMEMBERED: dict[str, Credentials] = {}


def remember(url: str) -> str:
    """Keep the credentials of a URL the user gave for this process's git calls; its clean URL."""
    clean, creds = split_credentials(url)
    if creds is not None:
        _REMEMBERED[clean] = creds
    return clean


def _credential_args(clean: str) -> tuple[list[str], dict[str, str], str | None]:
    """git's extra arguments and environment for a clean URL, and the secret to scrub from its messages."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    creds = _REMEMBERED.get(clean)
    if creds is None:
        return [], env, None
    env |= {_CRED_USER: creds.username, _CRED_PASSWORD: creds.password}
    args = ["-c", "credential.helper=", "-c", f"credential.helper={_HELPER}"]
    return args, env, creds.password


def _git(where: Path, clean: str, *args: str) -> str:
    """Run a git command that talks to `clean`'s remote, with its remembered credentials (if any);
    a failure's message never contains them."""
    extra, env, secret = _credential_args(clean)
    try:
        return run_git(git_cmd(where), *extra, *args, env=env)
    except GitError as exc:
        text = str(exc)
        if secret:
            text = text.replace(secret, "***")
        text = text.replace(f"credential.helper={_HELPER}", "credential.helper=...")
        raise GitError(text) from None


def local_repo_path(paths: Paths, repo: str) -> Path:
    """Where this home works on a run's repository: its clone for a URL, the path itself otherwise."""
    return clone_dir(paths, repo) if is_url(repo) else Path(repo)


def clone_dir(paths: Paths, url: str) -> Path:
    """`HOME/repos/<name>-<hash of the clean URL>`: one clone per repository per home."""
    clean = clean_url(url)
    tail = clean.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    name = _UNSAFE_NAME.sub("-", tail).strip("-.")[:40] or "repo"
    digest = hashlib.sha256(clean.encode()).hexdigest()[:10]
    return inside(paths.home / "repos", f"{name}-{digest}")


@contextmanager
def _clones_locked(paths: Paths) -> Iterator[Path]:
    """One process at a time makes a clone in this home (an flock on the repos folder)."""
    folder = paths.home / "repos"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(fd)


def ensure_clone(paths: Paths, url: str) -> Path:
    """Clone the repository into this home, or fetch it when it is cloned already, and put the
    clone's checkout at the tip of the origin's default branch; returns the clone's folder."""
    clean = clean_url(url)
    target = clone_dir(paths, clean)
    with _clones_locked(paths):
        if not (target / ".git").is_dir():
            partial = target.with_name(target.name + ".partial")
            if partial.exists():  # left by a clone that was interrupted
                shutil.rmtree(partial)
            try:
                _git(paths.home / "repos", clean, "clone", "-q", "--", clean, str(partial))
            except GitError as exc:
                raise GitError(
                    f"could not clone {clean}: {exc}; check the URL and that this machine's git "
                    "credentials (ssh key, credential helper) give read access to it"
                ) from None
            partial.rename(target)
    with worktrees_locked(target):
        _git(target, clean, "fetch", "-q", "--prune", "origin")
        default = _origin_default(target, clean)
        run_git(git_cmd(target), "checkout", "-q", "--detach", "--force", default)
    return target


def _origin_default(repo: Path, clean: str) -> str:
    """The origin's default branch as a remote-tracking ref (what `git clone` would check out)."""
    if rev_parse(repo, "refs/remotes/origin/HEAD") is None:
        _git(repo, clean, "remote", "set-head", "origin", "--auto")
    if rev_parse(repo, "refs/remotes/origin/HEAD") is None:
        raise InputError(f"{clean} has no default branch with commits; push a commit to it first")
    return "refs/remotes/origin/HEAD"


def fetch_branch(repo: Path, clean: str, branch: str) -> str | None:
    """Fetch `branch` from the origin into its remote-tracking ref; its commit, or None when the
    origin has no such branch."""
    listed = _git(repo, clean, "ls-remote", "--heads", "origin", f"refs/heads/{branch}")
    if not listed.strip():
        return None
    _git(repo, clean, "fetch", "-q", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    return rev_parse(repo, f"refs/remotes/origin/{branch}")


def push_branch(repo: Path, clean: str, branch: str, run_id: str) -> None:
    """Push the run branch to the origin (never forced, so it refuses history it would lose);
    PushError saying what failed and what to do."""
    try:
        _git(repo, clean, "push", "-q", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
    except GitError as exc:
        raise PushError(
            f"pushing {branch} to {clean} failed, so the phase is not recorded as done: {exc}. "
            "Give this machine's git credentials push access (or fix the hook or protection that "
            f"refused it), then `orchestrator resume {run_id}` pushes and records it."
        ) from None


def fetch_into(checkout: Path, branch: str, source: str) -> None:
    """Fetch `branch` from `source` (a remote's name or a URL) into the same local branch of a
    user's checkout, for `apply` on a machine that did not run the run."""
    try:
        _git(
            checkout,
            clean_url(source),
            "fetch",
            "-q",
            source,
            f"refs/heads/{branch}:refs/heads/{branch}",
        )
    except GitError as exc:
        raise GitError(
            f"{branch} is not in {checkout} and could not be fetched from {clean_url(source)}: {exc}; "
            "check that the run pushed it and that your git credentials can read it"
        ) from None


def ensure_branch_in(checkout: Path, branch: str, run_repo: str) -> None:
    """Make sure a user's checkout has the run branch before `apply`: fetched from its `origin`
    (or from the run's own repository when it has none) when it is not a local branch yet."""
    if not checkout.is_dir():
        raise InputError(
            f"{checkout} does not exist on this machine; pass --repo with your checkout of {run_repo}"
        )
    if rev_parse(checkout, f"refs/heads/{branch}") is not None:
        return
    has_origin = git_status(git_cmd(checkout), "remote", "get-url", "origin") == 0
    fetch_into(checkout, branch, "origin" if has_origin else run_repo)


def sync_run_branch(repo: Path, clean: str, branch: str, run_worktree: Path) -> None:
    """Before a run continues here: when the origin has the run branch, the local branch (and the
    run's worktree, when it exists) is put exactly where the origin's is, the last pushed phase.
    What this home merged but never pushed is dropped; the phase that made it is recorded only
    after a push, so it is delivered (and pushed) again from its own branch."""
    sha = fetch_branch(repo, clean, branch)
    if sha is None:
        return
    local = rev_parse(repo, f"refs/heads/{branch}")
    if local == sha:
        return
    if (run_worktree / ".git").exists():
        reset_hard(run_worktree, sha)  # moves the branch checked out there
        return
    with worktrees_locked(repo):
        g = git_cmd(repo)
        run_git(g, "worktree", "prune")  # a registration whose folder is gone holds the branch
        run_git(g, "branch", "-f", branch, sha)
