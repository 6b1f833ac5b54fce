"""Drives one run: lease and heartbeat, git setup, planning, the dependency-graph scheduler, the end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from config.loader import config_from_snapshot
from config.paths import Paths
from core import run_paths
from core.artifacts import record_staged, stage_artifact
from core.baseline import record_baseline
from core.context import RunContext
from core.diskfull import disk_full_error, is_disk_full, release_reserve
from core.errors import LeaseLostError, RunAborted, RunCancelled, RunLockedError, TransitionError
from core.events import PlanCreated
from core.gate import Gate
from core.git import remote, worktrees
from core.git import repo as gitrepo
from core.journal import Journal
from core.lessons import learn_from_run, lessons_line, prompt_lessons
from core.lifecycle import Lifecycle
from core.liveness import process_owner
from core.objstore import open_artifact_store
from core.phase_runner import PhaseRunner
from core.planner import make_plan
from core.records import (
    FINISHED_RUN_STATUSES,
    FindingStatus,
    InterventionKind,
    InterventionStatus,
    Phase,
    PhaseStatus,
    Run,
    RunStatus,
)
from core.reports.document import run_document
from core.reports.markdown import render_markdown
from core.setup import build_clients
from core.state.contexts import PromptContext
from core.state.fencing import fenced
from core.state.store import StateStore
from core.verification import breaches_of

if TYPE_CHECKING:
    from config.schema import ExecutionConfig

LEASE_OWNER = process_owner()  # "host:pid@start", so liveness can tell this very process


class RunDriver:
    """Executes (or resumes) one run in this process while holding its heartbeat lease."""

    def __init__(
        self,
        paths: Paths,
        store: StateStore,
        journal: Journal,
        run_id: str,
        *,
        auto_approve: bool,
        lifecycle: Lifecycle | None = None,
        owner: str | None = None,
    ) -> None:
        self.paths = paths
        self.store = store
        self.journal = journal
        self.lifecycle = lifecycle or Lifecycle(store, journal)
        self.run_id = run_id
        self.auto_approve = auto_approve
        self.owner = owner or f"{LEASE_OWNER}:{id(self)}"  # a worker names its own
        self._cancelled_by_user = False
        self._lease_lost = False  # our lease expired and another process took or recorded the run
        self._ending = False  # the run is being ended: a cancel arriving now changes nothing
        self._status = RunStatus.PENDING  # the run's status as this driver last set it
        self._before_waiting = RunStatus.EXECUTING
        self._learned = False  # lessons were derived before the run's end was written
        # ctx.findings_stored when a threshold check last found no open finding at all: until
        # a phase stores one, no threshold can be passed, so the check after a phase is free.
        self._none_open_at: int | None = None

    @property
    def lease_lost(self) -> bool:
        """Whether another process took the run over while this driver drove it."""
        return self._lease_lost

    async def drive(self) -> Run:
        """Run to a final or interrupted status and return the stored run.

        Every way out (the end of the plan, any exception including foreign ones, a cancel from
        any process, a signal, a full disk) ends the run through the lifecycle, so the stored
        run, its phases, attempts and questions tell the truth afterwards.
        """
        run = await self.store.get_run(self.run_id)
        if run.status in FINISHED_RUN_STATUSES:
            return run
        try:
            config, _ = config_from_snapshot(run.config)
        except Exception as exc:  # noqa: BLE001  (a stored configuration that no longer loads)
            return await self.lifecycle.end_run(run.id, exc)
        token = await self.store.acquire_lease(run.id, self.owner, config.execution.lease_seconds)
        if token is None:
            raise RunLockedError(
                f"run {run.id} is being executed by {run.lease_owner}; wait for it, or for its lease to "
                f"expire (about {config.execution.lease_seconds:.0f} s after that process died)"
            )
        with fenced(run.id, token):  # every write below is refused once another process takes over
            return await self._drive_leased(run, config.execution)

    async def _drive_leased(self, run: Run, execution: ExecutionConfig) -> Run:
        """`drive` once the lease is held (and its fence set)."""
        main = asyncio.current_task()
        heartbeat = asyncio.create_task(
            self._heartbeat(main, execution.heartbeat_seconds, execution.lease_seconds)
        )
        self._status = run.status
        reraise: BaseException | None = None
        try:
            if run.lost:
                # a process that died left it active; we hold its lease now: record that first
                run = await self.lifecycle.record_lost(run.id, run.lease_owner, clear_lease=False)
                self._status = run.status
            failed = await self._execute(run)
            # Every phase and attempt is final: learn now, so the run's announced end is its
            # last step (an app quitting on "completed" finds nothing left running).
            await learn_from_run(self.store, self.journal, self.run_id)
            self._learned = True
            way_out: BaseException | RunStatus = RunStatus.FAILED if failed else RunStatus.COMPLETED
            error = "phases failed: " + ", ".join(failed) if failed else None
        except BaseException as exc:  # noqa: BLE001  (every way out ends the run truthfully)
            way_out, error = exc, None
            if isinstance(exc, asyncio.CancelledError):
                if main is not None:
                    main.uncancel()
                if self._cancelled_by_user:
                    way_out = RunCancelled()
            elif isinstance(exc, LeaseLostError):  # a write was refused: another process took over
                self._lease_lost = True
            elif not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: record, go on
                reraise = exc
                way_out = asyncio.CancelledError()
            elif is_disk_full(exc):
                release_reserve(self.paths.home)  # room to record the end on the full disk
                way_out = disk_full_error(
                    exc, [self.paths.home, remote.local_repo_path(self.paths, run.repo)], run.id
                )
        self._ending = True  # set before any await, so the heartbeat cannot cancel the ending
        ended = False
        try:
            if self._lease_lost:  # another process recorded or took the run: it owns the truth
                self.journal.log(self.run_id, None, "warning", "lease lost; this process stops")
            else:
                await self._finish(way_out, error)
            ended = True
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self.journal.flush()
            if ended and not self._lease_lost:  # else it stays: once expired, reads say interrupted
                await self.store.release_lease(self.run_id, self.owner)
        if reraise is not None:
            raise reraise
        return await self.store.get_run(self.run_id)

    async def _heartbeat(self, main: asyncio.Task | None, every: float, ttl: float) -> None:
        """Renew the lease and watch the cancel flag that `cancel` sets from any process."""
        while True:
            await asyncio.sleep(every)
            try:
                renewed = await self.store.renew_lease(self.run_id, self.owner, ttl)
                cancel = await self.store.cancel_requested(self.run_id)
            except LeaseLostError:
                renewed, cancel = False, False
            except Exception as exc:  # noqa: BLE001  (a busy database: try again next beat)
                self.journal.log(self.run_id, None, "warning", f"heartbeat failed: {exc}")
                continue
            if not renewed:
                self._lease_lost = True
                if main is not None:
                    main.cancel()
                return
            if cancel and main is not None and not self._ending:
                self._cancelled_by_user = True
                main.cancel()
                return

    async def _set_run_status(self, status: RunStatus) -> None:
        await self.lifecycle.run_to(self.run_id, status)
        self._status = status

    async def _finish(self, way_out: BaseException | RunStatus, error: str | None) -> None:
        """End the run through the lifecycle, then write the summary artifact (a summary that
        cannot be written is logged; the run's end is already stored)."""
        try:
            run = await self.lifecycle.end_run(self.run_id, way_out, error=error)
        except TransitionError:
            run = await self.store.get_run(self.run_id)
            if run.status not in FINISHED_RUN_STATUSES:
                raise
            # Another process ended it first (`cancel` ends a run whose lease looked expired,
            # as a starved process's can): that end is the truth, and this one says so.
            self.journal.log(
                self.run_id, None, "warning", f"run already {run.status} by another process"
            )
            run = await self.lifecycle.close_leftovers(run)
        self._status = run.status
        try:
            await self._write_summary()
        except Exception as exc:  # noqa: BLE001  (the stored end stays true without a summary)
            self.journal.log(self.run_id, None, "warning", f"summary not written: {exc}")
        if not self._learned:  # ended by an exception: learn from what the end left true
            await learn_from_run(self.store, self.journal, self.run_id)

    # ---- the run -------------------------------------------------------------------------------

    async def _execute(self, run: Run) -> list[str]:
        """Plan (once), execute every phase, check the end thresholds; returns the failed phases."""
        ctx = await self._context(run)
        self._none_open_at = None  # counted on this context's findings_stored
        try:
            phases = await self.store.get_phases_for_run(run.id)
            if not phases:
                phases = await self._plan(ctx)
            await self._set_run_status(RunStatus.EXECUTING)
            await record_baseline(ctx)
            await self._schedule(ctx)
            await self._check_thresholds(ctx, None)
            phases = await self.store.get_phases_for_run(ctx.run_id)
            return [p.plan_id for p in phases if p.status is PhaseStatus.FAILED]
        finally:
            await ctx.llm.aclose()

    async def _context(self, run: Run) -> RunContext:
        """Build clients from the run's stored configuration and make sure its worktree exists."""
        config, catalog = config_from_snapshot(run.config)
        origin = run.repo if remote.is_url(run.repo) else None
        if origin is not None:  # this home's clone, fetched now
            repo = await asyncio.to_thread(remote.ensure_clone, self.paths, origin)
        else:
            repo = Path(run.repo)
        run_worktree = run_paths.run_worktree(self.paths, run.id)
        if run.branch is None or run.base_commit is None:
            base = await asyncio.to_thread(gitrepo.head_commit_of, repo)
            branch = f"{config.git.branch_prefix}{run.id}"
            run = await self.store.set_run_git(run.id, base, branch, str(run_worktree))
        else:
            base, branch = run.base_commit, run.branch
            if run.worktree != str(run_worktree):  # continued in another home: its worktree
                run = await self.store.set_run_git(run.id, base, branch, str(run_worktree))
        if origin is not None:
            await asyncio.to_thread(remote.sync_run_branch, repo, origin, branch, run_worktree)
        await asyncio.to_thread(worktrees.create_worktree, repo, run_worktree, branch, base)
        gate = Gate(
            self.store,
            self.lifecycle,
            run.id,
            auto_approve=self.auto_approve,
            poll_seconds=config.execution.poll_seconds,
            on_waiting=self._on_waiting,
        )
        artifacts = open_artifact_store(config.artifacts.url, self.paths.home)
        await artifacts.check()  # a missing bucket fails the run now, saying what to do
        clients = await build_clients(
            config, catalog, self.store, run.id, self.paths, gate=gate, journal=self.journal
        )
        return RunContext(
            run=run,
            config=config,
            catalog=catalog,
            paths=self.paths,
            store=self.store,
            journal=self.journal,
            lifecycle=self.lifecycle,
            gate=gate,
            llm=clients.llm,
            executor=clients.executor,
            retriever=clients.retriever,
            planner_model=clients.planner_model,
            executor_model=clients.executor_model,
            executions=clients.executions,
            agent_budget=clients.agent_budget,
            repo=repo,
            run_worktree=run_worktree,
            origin=origin,
            artifacts=artifacts,
        )

    async def _on_waiting(self, waiting: bool) -> None:
        """The run waits for a person while any question is open, then goes back to what it did."""
        if waiting:
            self._before_waiting = self._status
            await self._set_run_status(RunStatus.WAITING)
        else:
            await self._set_run_status(self._before_waiting)

    async def _plan(self, ctx: RunContext) -> list[Phase]:
        await self._set_run_status(RunStatus.PLANNING)
        prepare = getattr(ctx.retriever, "prepare", None)
        if prepare is not None:  # the repository's index is brought up to date before planning
            stats = await prepare(ctx.repo)
            ctx.log(
                None,
                f"index: {stats.files} files, {stats.chunks} chunks "
                f"({stats.changed_files + stats.added_files} new or changed, "
                f"{stats.pending} to be embedded in the background) in {stats.seconds:.1f} s",
            )
        retrieved = await ctx.retriever.retrieve(
            ctx.run.task, repo=ctx.run_worktree, budget_tokens=ctx.config.rag.max_context_tokens
        )
        await self.store.record_context(
            ctx.run_id, None, "plan", PromptContext(ctx.run.task, retrieved.text, retrieved.sources)
        )
        lessons = await self._lessons(ctx)
        model = ctx.planner_model
        plan, _raw = await make_plan(
            ctx.llm,
            task=ctx.run.task,
            model=model.model or model.name,
            context=retrieved.text,
            run_id=ctx.run_id,
            temperature=model.temperature,
            max_tokens=model.max_tokens,
            context_window=model.context_window,
            on_text=lambda text: ctx.log(None, text, "llm"),
            lessons=lessons,
        )
        phases = await self.store.save_plan(
            ctx.run_id, [p.model_dump() for p in plan.phases], ctx.config.execution.max_attempts
        )
        await self.journal.emit(PlanCreated(run_id=ctx.run_id, phase_ids=[p.id for p in phases]))
        ctx.log(None, "plan: " + ", ".join(f"{p.plan_id} ({p.risk_level})" for p in phases))
        return phases

    async def _lessons(self, ctx: RunContext) -> str:
        """The planner's Lessons section from earlier runs on the repository, logged when any."""
        text, used = await prompt_lessons(
            self.store, ctx.config.lessons, repo=ctx.repo, run_id=ctx.run_id, task=ctx.run.task
        )
        if used:
            ctx.log(None, lessons_line(used))
        return text

    async def _schedule(self, ctx: RunContext) -> None:
        """Start every phase whose dependencies completed, up to max_parallel_phases at once."""
        running: dict[str, asyncio.Task[PhaseStatus]] = {}
        runners: dict[str, PhaseRunner] = {}
        limit = ctx.config.execution.max_parallel_phases
        # Only this driver changes the run's phases while it holds the lease, so it keeps the rows
        # in memory and re-reads just the phase that finished.
        phases = {p.plan_id: p for p in await self.store.get_phases_for_run(ctx.run_id)}
        skip_check = True  # at the start, and after a phase ended other than completed
        try:
            while True:
                if skip_check:
                    await self._skip_blocked(ctx, phases)
                for plan_id, phase in phases.items():
                    if len(running) >= limit:
                        break
                    if plan_id in running or phase.status not in (
                        PhaseStatus.PENDING,
                        PhaseStatus.IN_PROGRESS,
                    ):
                        continue
                    if all(phases[d].status is PhaseStatus.COMPLETED for d in phase.dependencies):
                        runners[plan_id] = PhaseRunner(ctx, phase)
                        running[plan_id] = asyncio.create_task(runners[plan_id].run())
                if not running:
                    return
                done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                ended = [k for k, t in running.items() if t in done]
                for plan_id in ended:
                    task = running.pop(plan_id)
                    task.result()  # re-raises RunAborted and friends
                    phases[plan_id] = runners.pop(plan_id).phase  # the runner keeps its stored row
                    await self._check_thresholds(ctx, phases[plan_id])
                # Only a phase that ended other than completed can block the ones after it.
                skip_check = any(phases[p].status is not PhaseStatus.COMPLETED for p in ended)
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    async def _skip_blocked(self, ctx: RunContext, phases: dict[str, Phase]) -> None:
        """Skip pending phases whose dependency was skipped or failed (they can never start)."""
        changed = True
        while changed:
            changed = False
            for plan_id, phase in phases.items():
                if phase.status is not PhaseStatus.PENDING:
                    continue
                blocked = [
                    d
                    for d in phase.dependencies
                    if phases[d].status in (PhaseStatus.SKIPPED, PhaseStatus.FAILED)
                ]
                if blocked:
                    error = f"dependency {blocked[0]} was {phases[blocked[0]].status}"
                    phases[plan_id] = await self.lifecycle.phase_to(
                        phase, PhaseStatus.SKIPPED, error=error
                    )
                    changed = True

    async def _check_thresholds(self, ctx: RunContext, phase: Phase | None) -> None:
        """After a phase's last attempt (and once at the end, phase None): abort, ask or warn when
        open findings (baseline excluded) pass a threshold."""
        if phase is not None and self._none_open_at == ctx.findings_stored:
            return
        stored = ctx.findings_stored
        severities, categories = await self._settled_open_findings(ctx.run_id, stored)
        breaches = breaches_of(ctx.config.thresholds, severities, categories)
        if not breaches:
            return  # the usual case after a phase: no read of the run's questions
        asked = {
            (i.payload.get("key"), i.status)
            for i in await self.store.list_interventions(run_id=ctx.run_id)
            if i.kind is InterventionKind.THRESHOLD
        }
        for breach in breaches:
            text = f"{breach.kind} findings: {breach.actual} open, threshold {breach.limit}"
            key = f"threshold-{breach.kind}"
            if breach.action == "warn":
                ctx.log(None, f"warning: {text}", "warning")
            elif breach.action == "abort":
                raise RunAborted(f"too many findings: {text}")
            elif phase is None and (key, InterventionStatus.APPROVED) in asked:
                continue  # approved after a phase already; the end check does not ask again
            else:
                where = f"after phase {phase.plan_id}" if phase else "at the end of the run"
                answer = await ctx.gate.decide(
                    InterventionKind.THRESHOLD,
                    phase_id=phase.id if phase else None,
                    key=key,
                    reason=f"{where}: {text}",
                    action_required="approve: continue the run; reject: abort it",
                )
                if answer.status is InterventionStatus.REJECTED:
                    raise RunAborted(f"threshold exceeded and rejected: {text}")

    async def _settled_open_findings(
        self, run_id: str, stored: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Open findings by severity and category, of phases past their last attempt only;
        `stored` is ctx.findings_stored as the read began (remembered when none is open)."""
        severities = {"major": 0, "medium": 0, "minor": 0}
        categories: dict[str, int] = {}
        open_findings = [
            f
            for f in await self.store.get_findings(run_id)
            if f.status in (FindingStatus.NEW, FindingStatus.OPEN)
        ]
        if not open_findings:
            self._none_open_at = stored
            return severities, categories
        self._none_open_at = None
        settled = {
            p.id
            for p in await self.store.get_phases_for_run(run_id)
            if p.status in (PhaseStatus.COMPLETED, PhaseStatus.FAILED)
        }
        for finding in open_findings:
            if finding.phase_id in settled:
                severities[finding.severity] += 1
                categories[finding.category] = categories.get(finding.category, 0) + 1
        return severities, categories

    async def _write_summary(self) -> None:
        """Write the markdown summary and the run's log as artifacts."""
        run = await self.store.get_run(self.run_id)
        settings = (run.config or {}).get("config", {}).get("artifacts", {})
        if not settings.get("write_summary", True):
            return
        artifacts = open_artifact_store(str(settings.get("url") or ""), self.paths.home)
        home = self.paths.home
        folder = run_paths.run_artifacts(self.paths, self.run_id)
        doc = await run_document(self.store, self.run_id)
        summary = folder / "summary.md"
        staged = await stage_artifact(
            artifacts, home, self.run_id, None, summary, render_markdown(doc), "summary"
        )
        await record_staged(self.store, self.journal, staged)
        log_path = folder / "run.log"
        lines: list[str] = []
        after = 0
        while batch := await self.store.get_logs(self.run_id, after_seq=after, limit=5000):
            lines.extend(f"{r.ts} {r.level:<7} {r.message}" for r in batch)
            after = batch[-1].seq
        text = "\n".join(lines) + "\n"
        staged = await stage_artifact(artifacts, home, self.run_id, None, log_path, text, "log")
        await record_staged(self.store, self.journal, staged)
