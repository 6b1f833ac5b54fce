"""Synchronous git operations on a repository or worktree: open, cleanliness, commits with trailers, history queries."""

from __future__ import annotations

from pathlib import Path

import git

from core.errors import GitError, RepoError

# How far back find_commit_with_trailers looks; a run never makes more commits than this on one branch.
TRAILER_SEARCH_DEPTH = 500
_MAX_LISTED_PATHS = 10


def git_cmd(path: Path | str) -> git.Git:
    """A git command runner working in `path`; cheap, and holds no persistent helper processes."""
    return git.Git(str(path))


def run_git(g: git.Git, *args: str, env: dict[str, str] | None = None, strip: bool = True) -> str:
    """Run one git command and turn a failure into GitError carrying git's own stderr."""
    try:
        out: str = g.execute(["git", *args], env=env, strip_newline_in_stdout=strip)
    except git.GitCommandError as exc:
        stderr = (exc.stderr or "").strip().removeprefix("stderr:").strip().strip("'").strip()
        stdout = (exc.stdout or "").strip().removeprefix("stdout:").strip().strip("'").strip()
        detail = stderr or stdout or str(exc)
        raise GitError(f"git {' '.join(args)} failed in {g.working_dir}: {detail}") from exc
    return out


def git_status(g: git.Git, *args: str) -> int:
    """Run a git command only for its exit status (0, 1, ...), never raising on a non-zero one."""
    status, _out, _err = g.execute(["git", *args], with_extended_output=True, with_exceptions=False)
    return int(status)


def identity_env(author_name: str, author_email: str) -> dict[str, str]:
    """Author and committer variables so commits work without any user-level git config."""
    return {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }


def status_paths(g: git.Git) -> list[str]:
    """Paths with uncommitted changes (staged, modified, untracked but not ignored), from porcelain status."""
    out = run_git(g, "status", "--porcelain=v1", "-z", "--untracked-files=all", strip=False)
    tokens = out.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(tokens):
        entry = tokens[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":
            i += 1  # the rename's source path follows as its own token
    return paths


def open_repo(path: Path | str) -> git.Repo:
    """Open the git repository containing `path` at its toplevel, or say exactly what the user must do."""
    p = Path(path).expanduser()
    if not p.exists():
        raise RepoError(f"{p} does not exist; pass --repo with the path of a git repository.")
    if not p.is_dir():
        raise RepoError(f"{p} is not a directory; pass --repo with the path of a git repository.")
    try:
        probe = git.Repo(p, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise RepoError(
            f"{p} is not a git repository; run `git init` there and commit your files, "
            "or pass --repo with another path."
        ) from exc
    try:
        if probe.bare or probe.working_tree_dir is None:
            raise RepoError(
                f"{p} is a bare repository; pass --repo with a checkout that has a working tree."
            )
        top = Path(probe.working_tree_dir)
    finally:
        probe.close()
    repo = git.Repo(top)
    if not repo.head.is_valid():
        repo.close()
        raise RepoError(
            f"{top} has no commits yet; commit your files first (`git add -A && git commit -m init`)."
        )
    return repo


def ensure_clean(repo: git.Repo, allow_dirty: bool) -> None:
    """Refuse a repository with uncommitted changes unless the user explicitly allows starting from HEAD."""
    if allow_dirty:
        return
    paths = status_paths(repo.git)
    if not paths:
        return
    shown = "\n".join(f"  {p}" for p in paths[:_MAX_LISTED_PATHS])
    more = (
        f"\n  ... and {len(paths) - _MAX_LISTED_PATHS} more"
        if len(paths) > _MAX_LISTED_PATHS
        else ""
    )
    raise RepoError(
        f"{repo.working_tree_dir} has uncommitted changes:\n{shown}{more}\n"
        "commit or stash them, or pass --allow-dirty to start from HEAD."
    )


def head_commit_of(path: Path | str) -> str:
    """The full SHA of HEAD of the repository or worktree at `path`, without keeping a Repo open."""
    return run_git(git_cmd(path), "rev-parse", "HEAD")


def init_repo_with_commit(
    path: Path,
    message: str,
    author_name: str = "Agent Orchestrator",
    author_email: str = "orchestrator@localhost",
) -> str:
    """Make `path` a repository on main whose one commit holds all its files (the demo's sample); its SHA."""
    path.mkdir(parents=True, exist_ok=True)
    g = git_cmd(path)
    run_git(g, "init", "-q", "-b", "main")
    # A repo-local identity, so merges the demo later applies work without any user-level git config.
    run_git(g, "config", "user.name", author_name)
    run_git(g, "config", "user.email", author_email)
    run_git(g, "add", "-A")
    run_git(
        g, "commit", "-q", "--no-verify", "-m", message, env=identity_env(author_name, author_email)
    )
    return run_git(g, "rev-parse", "HEAD")


def rev_parse(path: Path | str, ref: str) -> str | None:
    """The full SHA a ref names, or None when it names nothing."""
    g = git_cmd(path)
    status, out, _err = g.execute(
        ["git", "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
        with_extended_output=True,
        with_exceptions=False,
    )
    return str(out).strip() if status == 0 and out else None


def _trailer_block(trailers: dict[str, str]) -> str:
    """Trailer lines "Key: value", one per entry, with newlines in values flattened."""
    return "\n".join(f"{k}: {' '.join(str(v).split())}" for k, v in trailers.items())


def commit_all(
    worktree: Path,
    message: str,
    trailers: dict[str, str],
    author_name: str,
    author_email: str,
) -> str | None:
    """Stage everything and commit through the git CLI (so hooks run); None when there is nothing to commit."""
    g = git_cmd(worktree)
    run_git(g, "add", "-A")
    if git_status(g, "diff", "--cached", "--quiet") == 0:
        return None
    full = message.strip()
    if trailers:
        full = f"{full}\n\n{_trailer_block(trailers)}"
    run_git(g, "commit", "--no-edit", "-m", full, env=identity_env(author_name, author_email))
    return run_git(g, "rev-parse", "HEAD")


def _has_trailers(body: str, trailers: dict[str, str]) -> bool:
    """Whether every "Key: value" trailer appears as an exact line of a commit message."""
    lines = {line.strip() for line in body.splitlines()}
    return all(f"{k}: {' '.join(str(v).split())}" in lines for k, v in trailers.items())


def _log_messages(path: Path | str, ref: str, *extra: str) -> list[tuple[str, str]]:
    """(sha, message) pairs newest first from `git log`, or [] when the ref does not exist."""
    if rev_parse(path, ref) is None:
        return []
    out = run_git(git_cmd(path), "log", *extra, "--format=%H%x00%B%x00", ref, "--", strip=False)
    parts = out.split("\0")
    pairs: list[tuple[str, str]] = []
    for i in range(0, len(parts) - 1, 2):
        sha = parts[i].strip()
        if sha:
            pairs.append((sha, parts[i + 1]))
    return pairs


def find_commit_with_trailers(
    worktree_or_repo: Path, ref: str, trailers: dict[str, str]
) -> str | None:
    """The newest commit reachable from ref whose message carries all these trailers, so resume never commits twice."""
    for sha, body in _log_messages(worktree_or_repo, ref, f"--max-count={TRAILER_SEARCH_DEPTH}"):
        if _has_trailers(body, trailers):
            return sha
    return None


def diff_of_commit(repo_path: Path, sha: str) -> str:
    """The commit's header, stat and patch, as stored in a run's diff artifact."""
    return run_git(git_cmd(repo_path), "show", "--stat", "--patch", "--format=fuller", sha)


def changed_files(worktree: Path) -> list[str]:
    """Paths changed in a worktree since its HEAD, untracked files included."""
    return status_paths(git_cmd(worktree))


def reset_hard(worktree: Path, commit: str) -> None:
    """Put a worktree back exactly at `commit`, removing untracked files but keeping ignored ones (caches, venvs)."""
    g = git_cmd(worktree)
    if git_status(g, "rev-parse", "-q", "--verify", "MERGE_HEAD") == 0:
        git_status(g, "merge", "--abort")
    run_git(g, "reset", "--hard", commit)
    run_git(g, "clean", "-fd")


def is_ancestor(repo_path: Path, a: str, b: str) -> bool:
    """Whether commit `a` is an ancestor of (or equal to) commit `b`."""
    g = git_cmd(repo_path)
    status = git_status(g, "merge-base", "--is-ancestor", a, b)
    if status in (0, 1):
        return status == 0
    # Anything else means a bad ref; let git say which.
    run_git(g, "merge-base", "--is-ancestor", a, b)
    return False


def tree_of_worktree(worktree: Path) -> str:
    """The git tree id of the worktree's files as they are now (untracked ones included, ignored
    ones not), written through a copy of its index so the real index stays untouched."""
    import shutil
    import tempfile

    g = git_cmd(worktree)
    index = Path(run_git(g, "rev-parse", "--path-format=absolute", "--git-path", "index"))
    with tempfile.TemporaryDirectory(prefix="orchestrator-tree-") as scratch:
        copy = Path(scratch) / "index"
        if index.is_file():
            shutil.copyfile(index, copy)
        env = {"GIT_INDEX_FILE": str(copy)}
        run_git(g, "add", "-A", env=env)
        return run_git(g, "write-tree", env=env)
