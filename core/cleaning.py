"""`clean`: remove what finished runs leave on disk (worktrees, branches, per-worktree indexes,
empty report folders) in a few batched git calls per repository; the history stays in the database."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from pathlib import Path

from config.paths import Paths
from core.git import worktrees
from core.git.remote import local_repo_path
from core.records import Phase, Run
from core.removal import remove_empty_dirs, remove_trees
from core.state.store import StateStore
from core.timeutil import utcnow


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` resolves inside `folder` (symlinks followed), never equal to it."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real != root and real.startswith(root + os.sep)


def run_folders(paths: Paths, run: Run, phases: list[Phase]) -> tuple[list[Path], list[str]]:
    """The worktree folders and branches a run made (its own, then one per phase)."""
    folders = [Path(run.worktree) if run.worktree else paths.worktrees / run.id / "run"]
    branches = [run.branch] if run.branch else []
    for phase in phases:
        if phase.worktree:
            folders.append(Path(phase.worktree))
        if phase.branch:
            branches.append(phase.branch)
    return folders, branches


def _clean_repo(paths: Paths, repo: Path, folders: list[Path], branches: list[str]) -> None:
    """Remove one repository's worktrees and branches: folders in the home are deleted and their
    registrations pruned; a worktree an older version made outside the home is removed by git."""
    ours = [f for f in folders if inside(f, paths.worktrees)]
    foreign = [f for f in folders if not inside(f, paths.worktrees)]
    if not repo.is_dir():  # the repository is gone: only our folders are left to remove
        remove_trees(ours)
        return
    registered = {os.path.realpath(e.get("worktree", "")) for e in worktrees.list_worktrees(repo)}
    for folder in foreign:
        if os.path.realpath(folder) in registered:
            worktrees.remove_worktree(repo, folder, None, False)
    worktrees.remove_worktrees(repo, ours, branches)


def _clean_home(paths: Paths, run_ids: list[str]) -> None:
    """Remove the runs' folders under worktrees/, empty report folders, and indexes of worktrees
    that are gone now."""
    remove_trees(f for r in run_ids if inside(f := paths.worktrees / r, paths.worktrees))
    for run_id in run_ids:
        if inside(paths.reports / run_id, paths.reports):
            remove_empty_dirs(paths.reports / run_id)
    if paths.indexes.is_dir() and any(paths.indexes.glob("*/*/catalog.sqlite")):
        from rag.layout import prune_indexes

        prune_indexes(paths.indexes, remove=remove_trees)


async def clean_runs(paths: Paths, store: StateStore, runs: list[Run]) -> list[str]:
    """Clean finished runs (already checked by the caller); returns the ids cleaned."""
    by_repo: dict[Path, tuple[list[Path], list[str]]] = defaultdict(lambda: ([], []))
    chosen: list[Run] = []
    for run in runs:
        if run.metadata.get("cleaned") or not run.branch:
            continue
        folders, branches = run_folders(paths, run, await store.get_phases_for_run(run.id))
        where = local_repo_path(paths, run.repo)  # this home's clone of a run on a URL
        by_repo[where][0].extend(folders)
        by_repo[where][1].extend(branches)
        chosen.append(run)
    for repo, (folders, branches) in by_repo.items():
        await asyncio.to_thread(_clean_repo, paths, repo, folders, branches)
    await asyncio.to_thread(_clean_home, paths, [r.id for r in chosen])
    for run in chosen:
        await store.set_run_metadata(run.id, cleaned=True, cleaned_at=utcnow())
    return [r.id for r in chosen]
