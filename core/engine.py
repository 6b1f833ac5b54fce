"""The engine: commands (start, resume, cancel, answer) and queries shared by the CLI and the TUI."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from config.paths import Paths
from core.actors import STARTED_BY, Actor, checked_name, current_actor
from core.bus import EventBus, Subscription
from core.diskfull import ensure_reserve
from core.errors import InputError, RunCancelled, RunLockedError, TransitionError
from core.events import RunCreated
from core.journal import Journal
from core.lifecycle import Lifecycle
from core.liveness import lease_held, lease_overdue, owner_lives, owner_pid
from core.logs import setup_deferred_logging, setup_logging, shutdown_logging
from core.procenv import redact
from core.records import (
    FINISHED_RUN_STATUSES,
    Artifact,
    Execution,
    Finding,
    Intervention,
    InterventionKind,
    InterventionStatus,
    Lesson,
    LogRecord,
    Phase,
    Run,
    RunAction,
    RunStatus,
    RunSummary,
    RunUsage,
    Usage,
)
from core.reports.document import run_document
from core.reports.export import export_text
from core.state.store import StateStore
from core.timeutil import utcnow

if TYPE_CHECKING:
    from config.loader import LoadedConfig
    from config.schema import LoggingConfig
    from core.budget import RaiseOffer
    from core.models_report import ModelStatus

# The modules a run needs (driver, git, providers, verification) are imported where they are used,
# so the listing commands start in a fraction of the time (see bench/startup.py).


class Engine:
    """Owns the store, the bus and the journal of one process; use `async with Engine.open(paths)`."""

    def __init__(self, paths: Paths, store: StateStore, bus: EventBus, journal: Journal) -> None:
        self.paths = paths
        self.store = store
        self.bus = bus
        self.journal = journal
        self.lifecycle = Lifecycle(store, journal)
        self._as_name: str | None = None  # `--as NAME`
        self._actor: Actor | None = None  # resolved on first use (it runs git)

    @classmethod
    async def open(
        cls,
        paths: Paths,
        *,
        logging: LoggingConfig | Callable[[], LoggingConfig] | None = None,
        read_only: bool = False,
    ) -> Engine:
        """Open the home folder's database and start the journal; logging settings come from config
        (a callable is asked only when the first log record is written).

        With `read_only` (a read-only home) nothing is created or written: logs go to stderr and
        the database is opened for reads, so every write raises ReadOnlyHomeError."""
        if not read_only:
            paths.ensure()
            ensure_reserve(paths.home)  # released to record a run's end on a full disk
        if callable(logging):
            setup_deferred_logging(paths.logs, logging)
        else:
            if logging is None:
                from config.schema import LoggingConfig

                logging = LoggingConfig()
            setup_logging(
                paths.logs,
                level=logging.level,
                max_bytes=logging.max_bytes,
                backup_count=logging.backup_count,
                json=logging.json,
            )
        store = await StateStore.open(
            paths.db,
            read_only=read_only,
            url=paths.db_url,
            password_file=paths.db_password_file,
        )
        bus = EventBus()
        journal = Journal(store, bus, flush_interval=0.1)
        await journal.start()
        return cls(paths, store, bus, journal)

    async def close(self) -> None:
        await self.journal.stop()
        self.bus.close()
        await self.store.close()
        shutdown_logging()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def subscribe(self, run_id: str | None = None) -> Subscription:
        return self.bus.subscribe(run_id=run_id)

    # ---- who is acting -------------------------------------------------------------------------

    def act_as(self, name: str | None) -> None:
        """Record this process's answers and commands as `name` (`--as NAME`); None: as the OS
        user and git's user.name."""
        self._as_name = None if name is None else checked_name(name)
        self._actor = None

    async def actor(self) -> Actor:
        """Who this process acts for (resolved once, off the event loop: it asks git)."""
        if self._actor is None:
            self._actor = await asyncio.to_thread(current_actor, self._as_name)
        return self._actor

    async def record_action(self, run_id: str, action: str, detail: str | None = None) -> RunAction:
        """Store who gave a command that changed a run, and say it in the run's log."""
        actor = await self.actor()
        done = await self.store.record_action(
            run_id,
            action,
            actor=actor.name,
            os_user=actor.os_user,
            git_name=actor.git_name,
            detail=redact(detail) if detail else None,
        )
        suffix = f" ({done.detail})" if done.detail else ""
        self.journal.log(run_id, None, "info", f"{action} by {actor.name}{suffix}")
        return done

    # ---- commands ------------------------------------------------------------------------------

    async def checkout(self, repo: Path | str) -> Path:
        """The local folder a run on `repo` works in: the path itself, or for a git URL this
        home's clone of it, cloned or fetched now (credentials in the URL are kept in memory only)."""
        from core.git import remote

        if not remote.is_url(str(repo)):
            return Path(repo).expanduser()
        url = remote.remember(str(repo))
        return await asyncio.to_thread(remote.ensure_clone, self.paths, url)

    async def create_run(
        self, task: str, repo: Path | str, loaded: LoadedConfig, *, allow_dirty: bool = False
    ) -> Run:
        """Check the repository and store a new pending run with its configuration snapshot; a
        repository named by git URL is cloned (or fetched) into the home and stored without credentials."""
        if not task.strip():
            raise InputError(
                'the task is empty: say what the run should do, e.g. orchestrator run "Add input validation" --repo .'
            )
        from config.loader import make_snapshot
        from core.git import remote
        from core.git import repo as gitrepo
        from core.llm.config_check import ensure_names
        from core.setup import preflight

        url = remote.clean_url(str(repo)) if remote.is_url(str(repo)) else None
        git_repo = await asyncio.to_thread(gitrepo.open_repo, await self.checkout(repo))
        try:
            root = Path(git_repo.working_tree_dir or repo).resolve()
            await asyncio.to_thread(
                gitrepo.ensure_clean, git_repo, allow_dirty or loaded.config.git.allow_dirty
            )
        finally:
            git_repo.close()
        ensure_names(loaded)  # names the file and key of a bad provider or model name
        await preflight(loaded.config, loaded.catalog)
        from core.objstore import open_artifact_store

        await open_artifact_store(loaded.config.artifacts.url, self.paths.home).check()
        await self.record_lost_runs()
        where = url or str(root)
        actor = await self.actor()
        # Who started it is stored with the run row itself (one write, as before).
        run = await self.store.create_run(
            redact(task.strip()),
            where,
            make_snapshot(loaded),
            metadata={STARTED_BY: actor.as_json()},
        )
        await self.journal.emit(RunCreated(run_id=run.id, task=run.task, repo=run.repo))
        self.journal.log(run.id, None, "info", f"run {run.id} created for {where} by {actor.name}")
        return run

    async def execute_run(self, run_id: str, *, auto_approve: bool = False) -> Run:
        """Drive a stored run in this process until it finishes, fails or is interrupted."""
        await asyncio.to_thread(importlib.import_module, "core.driver")  # off the event loop
        from core.driver import RunDriver

        return await RunDriver(
            self.paths,
            self.store,
            self.journal,
            run_id,
            auto_approve=auto_approve,
            lifecycle=self.lifecycle,
        ).drive()

    async def start_run(
        self,
        task: str,
        repo: Path | str,
        loaded: LoadedConfig,
        *,
        allow_dirty: bool = False,
        auto_approve: bool = False,
    ) -> Run:
        run = await self.create_run(task, repo, loaded, allow_dirty=allow_dirty)
        return await self.execute_run(run.id, auto_approve=auto_approve)

    async def submit_run(
        self,
        task: str,
        repo: Path | str,
        loaded: LoadedConfig,
        *,
        allow_dirty: bool = False,
        auto_approve: bool = False,
        record: bool = False,
    ) -> Run:
        """Store a run for a worker to drive (core.queue): checked and snapshotted as `run` does."""
        from core.queue import submit_run

        return await submit_run(
            self,
            task,
            repo,
            loaded,
            allow_dirty=allow_dirty,
            auto_approve=auto_approve,
            record=record,
        )

    async def resume_run(self, run_id: str, *, auto_approve: bool = False) -> Run:
        """Continue an interrupted or failed run from where it stopped, with its stored configuration."""
        run = await self.store.get_run(run_id)
        if run.status is RunStatus.COMPLETED:
            raise InputError(f"run {run_id} already completed; nothing to resume")
        if run.status is RunStatus.CANCELLED:
            raise InputError(f"run {run_id} was cancelled; start a new run instead")
        if self._lease_live(run):
            raise RunLockedError(self._still_driven(run))
        await self.recover(run)
        await self.record_action(run_id, "resumed", "with --yes" if auto_approve else None)
        return await self.execute_run(run_id, auto_approve=auto_approve)

    async def record_lost_runs(self) -> list[Run]:
        """Record every run whose driving process is gone as interrupted (writing commands call
        this; reads only present them so); returns the runs recorded."""
        recorded = []
        for run in await self.store.get_lost_runs():
            try:
                recorded.append(await self.lifecycle.record_lost(run.id, run.lease_owner))
            except TransitionError:
                continue  # resumed or recorded by another process meanwhile
        return recorded

    async def recover(self, run: Run) -> Run:
        """Record what happened to a run nobody drives: an active one whose process is gone
        becomes interrupted, a failed one is reopened (interrupted) so resume can continue it."""
        if run.lost:
            return await self.lifecycle.record_lost(run.id, run.lease_owner)
        if run.status is RunStatus.FAILED:
            return await self.lifecycle.run_to(
                run.id, RunStatus.INTERRUPTED, say=f"run {run.id} reopened to resume it"
            )
        return run

    async def cancel_run(self, run_id: str) -> Run:
        """Ask the process running the run to stop it; a run nobody is running is cancelled at once."""
        run = await self.store.get_run(run_id)
        if run.status in FINISHED_RUN_STATUSES:
            raise InputError(f"run {run_id} is already {run.status}")
        await self.store.request_cancel(run_id)
        await self.record_action(run_id, "cancelled")
        if not self._lease_live(run):
            ended = await self.lifecycle.end_run(run_id, RunCancelled())
            from core.lessons import learn_from_run

            await learn_from_run(self.store, self.journal, run_id)
            return ended
        return await self.store.get_run(run_id)

    async def resolve_intervention(
        self,
        intervention_id: str,
        *,
        approve: bool,
        note: str | None = None,
        budget_usd: float | None = None,
        budget_tokens: int | None = None,
    ) -> Intervention:
        """Record a person's decision; the run's process sees it at its next poll (or on resume).

        A `budget` intervention is approved with a new limit (budget_usd and/or budget_tokens),
        which is stored before the answer so the run continues under it; rejecting it stops the run.
        """
        if budget_usd is not None or budget_tokens is not None or approve:
            pending = await self.store.get_intervention(intervention_id)
            is_budget = pending.kind is InterventionKind.BUDGET
            if (budget_usd is not None or budget_tokens is not None) and not is_budget:
                raise InputError(
                    f"--budget-usd/--budget-tokens apply to budget interventions only; "
                    f"{intervention_id} is a {pending.kind} intervention"
                )
            if approve and is_budget and pending.status is InterventionStatus.PENDING:
                from core.budget import raise_budget

                raised = await raise_budget(self.store, pending, budget_usd, budget_tokens)
                note = f"{note}; {raised}" if note else raised
        status = InterventionStatus.APPROVED if approve else InterventionStatus.REJECTED
        actor = await self.actor()
        return await self.lifecycle.intervention_to(
            intervention_id, status, note=note, answered_by=actor.name
        )

    async def budget_offers(self, item: Intervention) -> list[RaiseOffer]:
        """The raised limits (+50%, doubled) a person may pick for a budget intervention; none
        for other kinds. Apply one with resolve_intervention(approve=True, **offer.approve_args())."""
        from core.budget import raise_offers, spent_for

        if item.kind is not InterventionKind.BUDGET:
            return []
        return raise_offers(item, await spent_for(self.store, item))

    async def apply_run(self, run_id: str, checkout: Path | None = None) -> str:
        """Merge a finished run's branch into the current branch of the user's checkout (the run's
        own repository path when none is given); the branch is fetched from the checkout's origin
        (or the run's URL) when it is not there. Returns the new HEAD."""
        run = await self.store.get_run(run_id)
        if run.status is not RunStatus.COMPLETED or not run.branch:
            raise InputError(f"run {run_id} is {run.status}; only a completed run can be applied")
        from core.git import remote, worktrees

        if checkout is None:
            if remote.is_url(run.repo):
                raise InputError(
                    f"run {run_id} worked on {run.repo}; pass --repo with your checkout of it "
                    "(or run apply inside that checkout)"
                )
            checkout = Path(run.repo)
        await asyncio.to_thread(remote.ensure_branch_in, checkout, run.branch, run.repo)
        head = await asyncio.to_thread(worktrees.apply_branch, checkout, run.branch)
        await self.record_action(run_id, "applied", f"{run.branch} merged, HEAD {head[:10]}")
        return head

    async def clean(self, run_id: str | None = None) -> list[str]:
        """Remove worktrees, branches, per-worktree indexes and empty folders of finished runs
        (history stays); returns the cleaned run ids."""
        await self.record_lost_runs()
        if run_id is not None:
            run = await self.store.get_run(run_id)
            if run.status not in FINISHED_RUN_STATUSES:
                raise InputError(
                    f"run {run_id} is {run.status}; cancel it or let it finish before cleaning it"
                )
            runs = [run]
        else:
            runs = [
                s.run
                for s in await self.store.list_runs(limit=1_000_000)
                if s.run.status in FINISHED_RUN_STATUSES
            ]
        from core.cleaning import clean_runs

        cleaned = await clean_runs(self.paths, self.store, runs)
        for done in cleaned:
            await self.record_action(done, "cleaned")
        return cleaned

    # ---- queries -------------------------------------------------------------------------------

    async def list_runs(
        self,
        status: str | None = None,
        *,
        recoverable: bool = False,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[RunSummary]:
        """Runs newest first with their progress, open findings, tokens and cost; `limit=None`
        lists every run."""
        if recoverable:
            ids = {r.id for r in await self.store.get_recoverable_runs()}
            found = [
                s
                for s in await self.store.list_runs(limit=None)
                if s.run.id in ids or s.run.lost or s.run.status is RunStatus.INTERRUPTED
            ]
            return found[offset : None if limit is None else offset + limit]
        return await self.store.list_runs(status=status, limit=limit, offset=offset)

    async def runs_page(
        self,
        *,
        query: str | None = None,
        status: str | None = None,
        sort: str = "started",
        descending: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunSummary]:
        """One page of runs matching `query` (id, task, repository or status), sorted by `sort`:
        started, task, repo, status, duration, phases, findings, cost (tokens) or worker."""
        return await self.store.list_runs_page(
            query=query, status=status, sort=sort, descending=descending, limit=limit, offset=offset
        )

    async def count_runs(self, *, query: str | None = None, status: str | None = None) -> int:
        """How many runs `runs_page` pages through for this filter."""
        return await self.store.count_runs_matching(query=query, status=status)

    async def get_run(self, run_id: str) -> Run:
        return await self.store.get_run(run_id)

    async def phases(self, run_id: str) -> list[Phase]:
        return await self.store.get_phases_for_run(run_id)

    async def run_document(self, run_id: str) -> dict[str, Any]:
        return await run_document(self.store, run_id)

    async def export(self, run_id: str, fmt: str) -> str:
        """The run summary as markdown, JSON or SARIF."""
        return export_text(await run_document(self.store, run_id), fmt)

    async def findings(
        self, run_id: str, *, phase_id: str | None = None, status: str | None = None
    ) -> list[Finding]:
        """A run's findings (baseline ones included), optionally of one phase or status."""
        return await self.store.get_findings(run_id, phase_id=phase_id, status=status)

    async def interventions(
        self, run_id: str | None = None, *, pending_only: bool = False
    ) -> list[Intervention]:
        return await self.store.list_interventions(run_id=run_id, pending_only=pending_only)

    async def intervention(self, intervention_id: str) -> Intervention:
        """One intervention by id, whatever its status."""
        return await self.store.get_intervention(intervention_id)

    async def change_mark(self, run_id: str | None = None) -> int:
        """A mark to take before reading a run's state, for wait_for_change (store docs)."""
        return await self.store.change_mark(run_id)

    @property
    def shared_store(self) -> bool:
        """True when the store is PostgreSQL: other machines' commits are announced by NOTIFY."""
        return self.store.dialect == "postgresql"

    def hears_changes(self) -> bool:
        """True while other processes' commits wake wait_for_change at once (PostgreSQL's LISTEN
        connection is up); False on SQLite or while it reconnects (callers poll then)."""
        return self.store.hears_changes()

    async def wait_for_change(
        self, timeout: float, run_id: str | None = None, since: int | None = None
    ) -> int:
        """Wait up to `timeout` seconds for a committed change (of `run_id`) made by any
        process: woken by PostgreSQL's NOTIFY, else the polling interval (SQLite)."""
        return await self.store.wait_for_change(timeout, run_id, since)

    async def logs(self, run_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[LogRecord]:
        return await self.store.get_logs(run_id, after_seq=after_seq, limit=limit)

    async def models(self, loaded: LoadedConfig) -> list[ModelStatus]:
        """Every configured model with its provider, reachability, presence, context and price."""
        from core.models_report import models_report

        return await models_report(loaded.config, loaded.catalog)

    async def usage(self, run_id: str) -> RunUsage:
        """Tokens and cost of a run's model calls: per run, for planning, and per phase."""
        await self.store.get_run(run_id)  # NotFoundError for an unknown id
        return await self.store.run_usage(run_id)

    async def stats(self, *, since: str | None = None, repo: str | None = None) -> dict[str, Any]:
        """The analytics document (core/stats.py) of runs created at or after `since` (an ISO
        date or timestamp) in repository `repo` (an absolute path), both optional."""
        from core.stats import stats_document

        rows = await self.store.stats_rows(since=since, repo=repo)
        return stats_document(rows, since=since, repo=repo)

    # ---- lessons (core/lessons.py) -------------------------------------------------------------

    async def lessons(self, repo: Path | None = None) -> list[Lesson]:
        """Every lesson learned, newest first (forgotten ones included), or one repository's."""
        if repo is None:
            return await self.store.list_lessons()
        from core.lessons import repo_key

        if not repo.is_dir():
            raise InputError(f"--repo {repo}: no such directory")
        key = await repo_key(repo)
        if key is None:
            raise InputError(f"--repo {repo}: not a git repository with a commit")
        return await self.store.list_lessons(key)

    async def lesson(self, lesson_id: str) -> Lesson:
        """One lesson by id; NotFoundError names the listing command."""
        return await self.store.get_lesson(lesson_id)

    async def forget_lesson(self, lesson_id: str) -> Lesson:
        """Forget a lesson for good (the runs it came from never teach it again), recording who."""
        actor = await self.actor()
        return await self.store.forget_lesson(lesson_id, actor.name)

    # ---- queries of the TUI's run view ---------------------------------------------------------

    async def log_page(
        self,
        run_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 500,
        contains: str | None = None,
    ) -> list[LogRecord]:
        """Log lines oldest first: the first `limit` after `after_seq` when it is given, else the
        last `limit` before `before_seq` (the newest when None); `contains` filters, any case."""
        if after_seq is not None:
            return await self.store.get_logs(
                run_id, after_seq=after_seq, limit=limit, contains=contains
            )
        return await self.store.get_logs_before(
            run_id, before_seq=before_seq, limit=limit, contains=contains
        )

    async def log_count(self, run_id: str) -> int:
        return await self.store.count_logs(run_id)

    async def executions(self, run_id: str) -> list[Execution]:
        """Every attempt of every phase of a run, oldest first."""
        return await self.store.get_executions(run_id)

    async def usage_rows(self, run_id: str) -> list[Usage]:
        """Token totals per role, provider and model (and cost once the ledger stores it)."""
        return await self.store.get_usage(run_id)

    async def phase_diff(self, run_id: str, phase_id: str) -> str:
        """The completed phase's commit (header, stat, patch) from the repository, or from the
        diff artifact saved when the commit is gone (cleaned up)."""
        phase = next((p for p in await self.phases(run_id) if p.id == phase_id), None)
        if phase is None:
            raise InputError(f"run {run_id} has no phase {phase_id}")
        if not phase.commit:
            raise InputError(f"phase {phase.plan_id} has no commit yet ({phase.status})")
        run = await self.store.get_run(run_id)
        from core.git import repo as gitrepo

        try:
            from core.git.remote import local_repo_path

            return await asyncio.to_thread(
                gitrepo.diff_of_commit, local_repo_path(self.paths, run.repo), phase.commit
            )
        except Exception as exc:  # the repository moved or the commit was collected
            for artifact in await self.store.get_artifacts(run_id):
                if artifact.type == "diff" and artifact.phase_id == phase_id:
                    text = await _read_text(artifact.path)
                    if text is not None:
                        return text
            raise InputError(
                f"cannot show commit {phase.commit[:12]} of phase {phase.plan_id}: {exc}"
            ) from exc

    async def attempt_report(self, execution_id: str) -> str | None:
        """The verification report (commands, exit codes, output) of one attempt, if it was saved."""
        execution = await self.store.get_execution(execution_id)
        phase = await self.store.get_phase(execution.phase_id)
        from core import run_paths

        name = run_paths.attempt_name(phase.plan_id, execution.attempt) + ".txt"
        for artifact in await self.store.get_artifacts(execution.run_id):
            if (
                artifact.type == "report"
                and artifact.phase_id == phase.id
                and artifact.name == name
            ):
                return await _read_text(artifact.path)
        return None

    async def artifacts(self, run_id: str) -> list[Artifact]:
        """A run's artifacts (summary, diffs, reports, log) with the locations they were stored at."""
        await self.store.get_run(run_id)  # NotFoundError names an unknown run
        return await self.store.get_artifacts(run_id)

    async def artifact_bytes(self, artifact: Artifact) -> bytes | None:
        """An artifact's content from its folder or bucket, or None when it is gone; an unreachable
        bucket raises ArtifactStoreError naming it and what to do."""
        from core.objstore import read_location

        return await read_location(artifact.path)

    async def export_artifacts(self, run_id: str, folder: Path) -> list[tuple[Artifact, Path]]:
        """Copy a run's artifacts into folder (created), each under its name; returns what was written.
        An artifact that is gone from its store raises ArtifactStoreError naming its location."""
        from core.errors import ArtifactStoreError
        from core.paths_safe import inside

        written: list[tuple[Artifact, Path]] = []
        for artifact in await self.artifacts(run_id):
            data = await self.artifact_bytes(artifact)
            if data is None:
                raise ArtifactStoreError(
                    f"artifact {artifact.name} of run {run_id} is gone from {artifact.path};"
                    " export without --artifacts, or restore it there"
                )
            target = inside(folder, artifact.name)
            await asyncio.to_thread(_write_bytes, target, data)
            written.append((artifact, target))
        return written

    @staticmethod
    def _lease_live(run: Run) -> bool:
        """True while another process holds the run: its owner lives on this host, or its lease
        has not expired and its owner is not known to be gone (core.liveness)."""
        return lease_held(run.lease_owner, run.lease_expires_at, utcnow())

    @staticmethod
    def _still_driven(run: Run) -> str:
        """Why a run held by another process cannot be taken, and what to do instead."""
        owner = run.lease_owner or "unknown"
        watch = f"watch it with `orchestrator show {run.id}`"
        if not owner_lives(owner):
            return f"run {run.id} is still running in {owner}; {watch}"
        pid = owner_pid(owner)
        late = (
            f"; its heartbeat is late (lease overdue since {run.lease_expires_at}) but it lives"
            if lease_overdue(owner, run.lease_expires_at, utcnow())
            else ""
        )
        return (
            f"run {run.id} is still driven by process {pid} on this machine ({owner}){late}:"
            f" {watch}, or stop that process (`kill {pid}`) and resume it then"
        )


async def _read_text(location: str) -> str | None:
    """A saved artifact's text from its folder or bucket, or None when it is gone."""
    from core.objstore import read_location

    data = await read_location(location)
    return None if data is None else data.decode("utf-8", errors="replace")


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
