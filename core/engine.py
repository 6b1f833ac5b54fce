"""The engine: commands (start, resume, cancel, answer) and queries shared by the CLI and the TUI."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from config.paths import Paths
from core.bus import EventBus, Subscription
from core.diskfull import ensure_reserve
from core.errors import InputError, RunCancelled, RunLockedError, TransitionError
from core.events import RunCreated
from core.journal import Journal
from core.lifecycle import Lifecycle
from core.liveness import owner_alive
from core.logs import setup_deferred_logging, setup_logging, shutdown_logging
from core.procenv import redact
from core.records import (
    FINISHED_RUN_STATUSES,
    Execution,
    Finding,
    Intervention,
    InterventionKind,
    InterventionStatus,
    LogRecord,
    Phase,
    Run,
    RunStatus,
    RunSummary,
    RunUsage,
    Usage,
)
from core.reports.document import run_document
from core.reports.export import export_text
from core.state.store import StateStore
from core.timeutil import parse_ts, utcnow

if TYPE_CHECKING:
    from config.loader import LoadedConfig
    from config.schema import LoggingConfig
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

    # ---- commands ------------------------------------------------------------------------------

    async def create_run(
        self, task: str, repo: Path, loaded: LoadedConfig, *, allow_dirty: bool = False
    ) -> Run:
        """Check the repository and store a new pending run with its configuration snapshot."""
        if not task.strip():
            raise InputError(
                'the task is empty: say what the run should do, e.g. orchestrator run "Add input validation" --repo .'
            )
        from config.loader import make_snapshot
        from core.git import repo as gitrepo
        from core.llm.config_check import ensure_names
        from core.setup import preflight

        git_repo = await asyncio.to_thread(gitrepo.open_repo, repo)
        try:
            root = Path(git_repo.working_tree_dir or repo).resolve()
            await asyncio.to_thread(
                gitrepo.ensure_clean, git_repo, allow_dirty or loaded.config.git.allow_dirty
            )
        finally:
            git_repo.close()
        ensure_names(loaded)  # names the file and key of a bad provider or model name
        await preflight(loaded.config, loaded.catalog)
        await self.record_lost_runs()
        run = await self.store.create_run(redact(task.strip()), str(root), make_snapshot(loaded))
        await self.journal.emit(RunCreated(run_id=run.id, task=run.task, repo=run.repo))
        self.journal.log(run.id, None, "info", f"run {run.id} created for {root}")
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
        repo: Path,
        loaded: LoadedConfig,
        *,
        allow_dirty: bool = False,
        auto_approve: bool = False,
    ) -> Run:
        run = await self.create_run(task, repo, loaded, allow_dirty=allow_dirty)
        return await self.execute_run(run.id, auto_approve=auto_approve)

    async def resume_run(self, run_id: str, *, auto_approve: bool = False) -> Run:
        """Continue an interrupted or failed run from where it stopped, with its stored configuration."""
        run = await self.store.get_run(run_id)
        if run.status is RunStatus.COMPLETED:
            raise InputError(f"run {run_id} already completed; nothing to resume")
        if run.status is RunStatus.CANCELLED:
            raise InputError(f"run {run_id} was cancelled; start a new run instead")
        if self._lease_live(run):
            raise RunLockedError(
                f"run {run_id} is still running in {run.lease_owner}; watch it with `orchestrator show {run_id}`"
            )
        await self.recover(run)
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
        if not self._lease_live(run):
            return await self.lifecycle.end_run(run_id, RunCancelled())
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
        return await self.lifecycle.intervention_to(intervention_id, status, note=note)

    async def apply_run(self, run_id: str) -> str:
        """Merge a finished run's branch into the user's current branch; returns the new HEAD."""
        run = await self.store.get_run(run_id)
        if run.status is not RunStatus.COMPLETED or not run.branch:
            raise InputError(f"run {run_id} is {run.status}; only a completed run can be applied")
        from core.git import worktrees

        return await asyncio.to_thread(worktrees.apply_branch, Path(run.repo), run.branch)

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

        return await clean_runs(self.paths, self.store, runs)

    # ---- queries -------------------------------------------------------------------------------

    async def list_runs(
        self,
        status: str | None = None,
        *,
        recoverable: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunSummary]:
        if recoverable:
            ids = {r.id for r in await self.store.get_recoverable_runs()}
            found = [
                s
                for s in await self.store.list_runs(limit=1_000_000)
                if s.run.id in ids or s.run.lost or s.run.status is RunStatus.INTERRUPTED
            ]
            return found[offset : offset + limit]
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
        started, task, repo, status, duration, phases, findings or cost (tokens)."""
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
            return await asyncio.to_thread(gitrepo.diff_of_commit, Path(run.repo), phase.commit)
        except Exception as exc:  # the repository moved or the commit was collected
            for artifact in await self.store.get_artifacts(run_id):
                if artifact.type == "diff" and artifact.phase_id == phase_id:
                    text = await _read_text(Path(artifact.path))
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
                return await _read_text(Path(artifact.path))
        return None

    @staticmethod
    def _lease_live(run: Run) -> bool:
        """True while another process holds the run: an unexpired lease whose owner is not known dead."""
        if not run.lease_owner or not run.lease_expires_at:
            return False
        return parse_ts(run.lease_expires_at) > parse_ts(utcnow()) and owner_alive(run.lease_owner)


async def _read_text(path: Path) -> str | None:
    """A saved artifact's text read off the event loop, or None when the file is gone."""
    try:
        return await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
    except OSError:
        return None
