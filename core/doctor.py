"""`orchestrator doctor`: what is wrong with a home (database, stranded runs, leftovers, disk) and
the fixes for it, each listed before it is done.

The database checks use plain sqlite3 (a damaged file cannot be opened by the store), or on
PostgreSQL (state.url) whether the server answers and which migrations it has; the rest goes
through the engine. Fixes never touch a branch outside the orchestrator's prefix.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from config.dburl import mask_url
from config.paths import Paths
from core.cleaning import inside
from core.errors import StateError
from core.git.remote import local_repo_path
from core.git.repo import git_cmd, run_git
from core.git.worktrees import prune_worktrees
from core.records import FINISHED_RUN_STATUSES, Run
from core.state.health import (
    DatabaseReport,
    checkpoint_truncate,
    inspect_database,
    recover_database,
    wal_too_big,
)

# Statuses of a run that has started and claims someone is driving it.
STARTED_ACTIVE = ("planning", "executing", "waiting")


@dataclass
class Action:
    """One fix `doctor --fix` will do (and, once done, whether it worked)."""

    action: str
    target: str
    done: bool = False
    error: str | None = None


def stranded(runs: list[Run], live: Callable[[Run], bool]) -> list[Run]:
    """Started runs whose driving process is gone: reads present them as interrupted (`lost`)
    until a writing command records it, or (from older versions) still say they are running."""
    return [r for r in runs if r.lost or (str(r.status) in STARTED_ACTIVE and not live(r))]


def orphan_worktrees(paths: Paths, runs: dict[str, Run]) -> list[Path]:
    """Folders under worktrees/ of runs the database does not know or that were cleaned."""
    if not paths.worktrees.is_dir():
        return []
    found = []
    for folder in sorted(paths.worktrees.iterdir()):
        run = runs.get(folder.name)
        if run is None or (run.status in FINISHED_RUN_STATUSES and run.metadata.get("cleaned")):
            found.append(folder)
    return found


def prefixed_branches(repo: Path, prefix: str) -> list[str]:
    """Branches of `repo` under the orchestrator's prefix (none when the prefix is empty)."""
    if not prefix or not repo.is_dir():
        return []
    try:
        out = run_git(
            git_cmd(repo), "for-each-ref", "--format=%(refname:lstrip=2)", f"refs/heads/{prefix}"
        )
    except Exception:  # noqa: BLE001 - a repository that moved or broke has nothing to list
        return []
    return [b for b in out.splitlines() if b.startswith(prefix)]


def branch_run_id(branch: str, prefix: str) -> str:
    """The run id a branch `<prefix><run>` or `<prefix><run>--<phase>` belongs to."""
    return branch[len(prefix) :].split("--", 1)[0]


def orphan_branch(branch: str, prefix: str, runs: dict[str, Run]) -> bool:
    """Whether a branch under the prefix belongs to no known run, or to one that was cleaned."""
    if not prefix or not branch.startswith(prefix):
        return False  # never a branch outside the orchestrator's prefix
    run = runs.get(branch_run_id(branch, prefix))
    return run is None or bool(run.status in FINISHED_RUN_STATUSES and run.metadata.get("cleaned"))


def index_folders(paths: Paths) -> tuple[int, list[str]]:
    """How many index folders the home holds, and the roots of those whose repository is gone."""
    count, gone = 0, []
    for catalog in sorted(paths.indexes.glob("*/*/catalog.sqlite")):
        count += 1
        try:
            with closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5)) as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
        except sqlite3.Error:
            continue
        if row and not Path(row[0]).exists():
            gone.append(str(row[0]))
    return count, gone


def disk_use(home: Path) -> dict[str, int]:
    """Bytes the home uses (allocated blocks) and the free bytes on its filesystem."""
    used = 0
    for current, _dirs, files in os.walk(home):
        for name in files:
            try:
                used += os.lstat(os.path.join(current, name)).st_blocks * 512
            except OSError:
                continue
    free = shutil.disk_usage(home).free if home.is_dir() else 0
    return {"home_bytes": used, "free_bytes": free}


def remove_orphan_worktree(paths: Paths, folder: Path, repos: list[Path]) -> None:
    """Delete a leftover folder under worktrees/ and prune its registrations in known repos."""
    if not inside(folder, paths.worktrees):
        raise StateError(f"{folder} is not under {paths.worktrees}; left alone")
    shutil.rmtree(folder)
    for repo in repos:
        if repo.is_dir():
            try:
                prune_worktrees(repo)
            except Exception:  # noqa: BLE001, S112 - a broken repository keeps its registration
                continue


def as_dict(value: Any) -> Any:
    """A dataclass (or list of them) as plain JSON values."""
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    return asdict(value)


@dataclass
class DoctorReport:
    """Everything `doctor` found, and the fixes it planned or did."""

    home: str
    database: DatabaseReport
    stranded_runs: list[str] = field(default_factory=list)
    orphan_worktrees: list[str] = field(default_factory=list)
    branch_prefix: str = ""
    branches: list[str] = field(default_factory=list)
    orphan_branches: list[str] = field(default_factory=list)
    index_folders: int = 0
    orphan_indexes: list[str] = field(default_factory=list)
    disk: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["database"]["damaged"] = self.database.damaged
        fixed = bool(self.actions) and all(a.done for a in self.actions)
        doc["healthy"] = not self.problems or fixed
        return doc


async def _do(
    report: DoctorReport,
    planned: list[tuple[Action, Callable[[], Any]]],
    say: Callable[[str], None],
) -> None:
    """List each fix, then do them one by one, recording what worked."""
    if not planned:
        return
    say("doctor --fix will:")
    for action, _ in planned:
        say(f"  - {action.action}: {action.target}")
    for action, step in planned:
        try:
            result = step()
            if hasattr(result, "__await__"):
                await result
            action.done = True
            say(f"done: {action.action}: {action.target}")
        except Exception as exc:  # noqa: BLE001 - one failed fix is reported, the others still run
            action.error = str(exc)
            say(f"FAILED: {action.action}: {action.target}: {exc}")
        report.actions.append(action)


async def run_doctor(
    paths: Paths,
    *,
    fix: bool,
    read_only: bool,
    prefix: str,
    say: Callable[[str], None],
) -> DoctorReport:
    """Inspect the home and, with `fix`, repair it: recover a damaged database, record stranded
    runs as interrupted, remove orphan worktrees, branches and index folders."""
    import asyncio

    from core.engine import Engine
    from rag.layout import prune_indexes

    if paths.db_url is not None:
        from core.state.pg import inspect_postgres

        try:
            database = await inspect_postgres(paths.db_url, paths.db_password_file)
        except StateError as exc:  # unreachable: say so, check nothing else
            report = DoctorReport(
                home=str(paths.home),
                database=DatabaseReport(path=mask_url(paths.db_url), exists=False),
            )
            report.problems.append(str(exc))
            return report
        report = DoctorReport(home=str(paths.home), database=database)
    else:
        report = DoctorReport(home=str(paths.home), database=inspect_database(paths.db))
    report.branch_prefix = prefix
    db = report.database
    if db.damaged:
        report.problems.append(f"the database {paths.db} is damaged: {'; '.join(db.integrity[:3])}")
        if fix:
            await _do(
                report,
                [
                    (
                        Action("recover the database into a new file", str(paths.db)),
                        lambda: asyncio.to_thread(recover_database, paths.db),
                    )
                ],
                say,
            )
            report.database = db = inspect_database(paths.db)
    if db.unknown_migrations:
        report.problems.append(
            f"the database was written by a newer orchestrator ({', '.join(db.unknown_migrations)})"
        )
    if wal_too_big(db):
        report.problems.append(f"the WAL holds {db.wal_bytes} bytes not yet in the database")
    report.disk = await asyncio.to_thread(disk_use, paths.home)
    if db.damaged or not db.exists or db.unknown_migrations:
        return report
    async with await Engine.open(paths, read_only=read_only) as engine:
        try:
            runs = [s.run for s in await engine.store.list_runs(limit=1_000_000)]
        except ValueError as exc:  # a row whose JSON is damaged: --fix recovers the database
            report.problems.append(f"a run row of {paths.db} cannot be read: {exc}")
            return report
        by_id = {r.id: r for r in runs}
        strand = stranded(runs, engine._lease_live)
        report.stranded_runs = [r.id for r in strand]
        orphans = await asyncio.to_thread(orphan_worktrees, paths, by_id)
        report.orphan_worktrees = [str(f) for f in orphans]
        repos = sorted({local_repo_path(paths, r.repo) for r in runs})  # a URL's: its clone
        repo_branches: dict[Path, list[str]] = {}
        for repo in repos:
            names = await asyncio.to_thread(prefixed_branches, repo, prefix)
            repo_branches[repo] = [b for b in names if orphan_branch(b, prefix, by_id)]
            report.branches += [f"{repo}:{b}" for b in names]
            report.orphan_branches += [f"{repo}:{b}" for b in repo_branches[repo]]
        report.index_folders, report.orphan_indexes = await asyncio.to_thread(index_folders, paths)
        for text, items in (
            ("run(s) say they are running but no live process holds them", strand),
            ("orphan worktree folder(s)", orphans),
            ("orphan branch(es)", report.orphan_branches),
            ("index folder(s) of repositories or worktrees that are gone", report.orphan_indexes),
        ):
            if items:
                report.problems.append(f"{len(items)} {text}")
        if not fix:
            return report
        planned: list[tuple[Action, Callable[[], Any]]] = []
        if wal_too_big(db):
            planned.append(
                (
                    Action("checkpoint and truncate the WAL", f"{paths.db}-wal"),
                    lambda: asyncio.to_thread(checkpoint_truncate, paths.db),
                )
            )
        for run in strand:
            planned.append(
                (
                    Action("record the stranded run as interrupted", run.id),
                    partial(engine.lifecycle.record_lost, run.id, run.lease_owner),
                )
            )
        for folder in orphans:
            planned.append(
                (
                    Action("remove the orphan worktree folder", str(folder)),
                    partial(asyncio.to_thread, remove_orphan_worktree, paths, folder, repos),
                )
            )
        for repo, names in repo_branches.items():
            for start in range(0, len(names), 200):
                chunk = names[start : start + 200]
                planned.append(
                    (
                        Action("delete orphan branch(es)", f"{repo}: {', '.join(chunk)}"),
                        partial(
                            asyncio.to_thread, run_git, git_cmd(repo), "branch", "-D", "--", *chunk
                        ),
                    )
                )
        if report.orphan_indexes:
            planned.append(
                (
                    Action(
                        "remove index folders of gone repositories",
                        f"{len(report.orphan_indexes)} under {paths.indexes}",
                    ),
                    lambda: asyncio.to_thread(prune_indexes, paths.indexes),
                )
            )
        await _do(report, planned, say)
    return report
