"""One phase from start to commit: risk approval, attempts with backoff, verification, commit, merge."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from core import run_paths
from core.artifacts import StagedArtifact
from core.attempt_host import RunAttemptHost
from core.context import RunContext
from core.errors import GitError, MergeConflictError, OrchestratorError, RunAborted
from core.executors.base import AttemptResult, PhaseJob
from core.git import remote, worktrees
from core.git import repo as gitrepo
from core.lessons import lessons_line, prompt_lessons
from core.lifecycle import INTERRUPTED_ATTEMPT
from core.phase_checks import PhaseChecks
from core.procenv import redact
from core.records import (
    RISK_ORDER,
    Execution,
    ExecutionStatus,
    InterventionKind,
    InterventionStatus,
    Lesson,
    Phase,
    PhaseStatus,
)
from core.retrieval import RetrievedContext
from core.state.contexts import PromptContext


class PhaseRunner:
    """Carries one phase through its attempts; the scheduler runs several of these concurrently."""

    def __init__(self, ctx: RunContext, phase: Phase) -> None:
        self.ctx = ctx
        self.phase = phase
        self.worktree = ctx.phase_worktree(phase.plan_id)
        self.branch = ctx.phase_branch(phase.plan_id)
        self.checks = PhaseChecks(ctx, phase, self.worktree)

    # ---- entry point ---------------------------------------------------------------------------

    async def run(self) -> PhaseStatus:
        """Run the phase to a final status; raises RunAborted when the run must fail."""
        phase = self.phase
        if phase.status in (PhaseStatus.COMPLETED, PhaseStatus.SKIPPED, PhaseStatus.FAILED):
            return phase.status
        if not await self._risk_approved():
            await self._set_status(PhaseStatus.SKIPPED, error="rejected at risk approval")
            return PhaseStatus.SKIPPED
        fresh = phase.status is PhaseStatus.PENDING and phase.attempts == 0
        base = await self._start()
        sha = None if fresh else await self._recover_interrupted_attempt()
        if sha is None:
            sha = await self._attempts(base)
        if sha is None:
            return PhaseStatus.FAILED
        status = await self._deliver(sha)
        await self._agent_budget()  # before the phases that wait for this one start
        return status

    async def _agent_budget(self) -> None:
        """When an agent executor (acp, external) did the work, check the budgets as its attempt
        ends: its usage was recorded then, and no call of our model would check it before the
        next attempt or phase. A rejected budget raises BudgetStopped."""
        if self.ctx.agent_budget is not None:
            await self.ctx.agent_budget.check_phase(self.phase.plan_id)

    # ---- approvals -----------------------------------------------------------------------------

    async def _risk_approved(self) -> bool:
        level = self.ctx.config.execution.approval_risk_level
        if level == "never" or RISK_ORDER.get(self.phase.risk_level, 0) < RISK_ORDER[level]:
            return True
        answer = await self.ctx.gate.decide(
            InterventionKind.RISK,
            phase_id=self.phase.id,
            key="risk",
            reason=f"phase {self.phase.plan_id} '{self.phase.name}' is {self.phase.risk_level} risk",
            action_required="approve: run the phase; reject: skip it and the phases that depend on it",
        )
        return answer.status is InterventionStatus.APPROVED

    # ---- git -----------------------------------------------------------------------------------

    async def _start(self) -> str:
        """Mark the phase in progress with its base commit (stored before the worktree exists, so
        resume reuses it), then make sure the worktree exists; returns the base commit."""
        ctx = self.ctx
        base: str
        if self.phase.base_commit is not None:
            base = self.phase.base_commit  # recorded before a restart
        else:
            async with ctx.git_lock:  # never between a merge and its push: bases are pushed commits
                base = await asyncio.to_thread(gitrepo.head_commit_of, ctx.run_worktree)
        await self._set_status(
            PhaseStatus.IN_PROGRESS,
            base_commit=base,
            branch=self.branch,
            worktree=str(self.worktree),
        )
        if self.phase.base_commit is not None:
            base = self.phase.base_commit  # the store keeps the first base it was given
        async with ctx.git_lock:
            await asyncio.to_thread(
                worktrees.create_worktree, ctx.repo, self.worktree, self.branch, base
            )
        return base

    async def _recover_interrupted_attempt(self) -> str | None:
        """After a crash: adopt a phase commit the dead process made, else close its attempt as failed."""
        ctx = self.ctx
        executions = await ctx.store.get_executions(ctx.run_id, phase_id=self.phase.id)
        # attempts the dead process left open, or that its interruption closed
        open_ = [
            e
            for e in executions
            if e.status is ExecutionStatus.RUNNING
            or (e.status is ExecutionStatus.FAILED and e.error == INTERRUPTED_ATTEMPT)
        ]
        sha = await asyncio.to_thread(
            gitrepo.find_commit_with_trailers,
            self.worktree,
            self.branch,
            ctx.trailers(self.phase.plan_id),
        )
        if sha is None and ctx.origin is not None:
            # A process that pushed the phase and stopped before recording it (killed, or its
            # lease lost): the run branch, now exactly the origin's, already holds the commit.
            sha = await asyncio.to_thread(
                gitrepo.find_commit_with_trailers,
                ctx.run_worktree,
                "HEAD",
                ctx.trailers(self.phase.plan_id),
            )
        last = executions[-1] if executions else None
        for execution in open_:
            if sha is not None and execution is last:
                await ctx.lifecycle.execution_to(
                    execution,
                    ExecutionStatus.SUCCEEDED,
                    output="recovered: the phase commit was found after a restart",
                )
            elif execution.status is ExecutionStatus.RUNNING:
                await ctx.lifecycle.execution_to(
                    execution, ExecutionStatus.FAILED, error=INTERRUPTED_ATTEMPT, level="warning"
                )
        if sha is not None:
            ctx.log(
                self.phase.id,
                f"found phase commit {sha[:10]} made before the restart; not redoing it",
            )
        return sha

    # ---- attempts ------------------------------------------------------------------------------

    async def _attempts(self, base: str) -> str | None:
        """Run attempts until one commits; None when the phase failed for good (and policy allows)."""
        ctx, cfg = self.ctx, self.ctx.config.execution
        attempts = self.phase.attempts  # this runner is the only one creating attempts of the phase
        previous_failure = await self._last_failure() if attempts else None
        while True:
            if attempts >= cfg.max_attempts and attempts >= cfg.max_attempts + (
                await self._granted_extra_attempts()
            ):
                if not await self._on_exhausted(attempts, previous_failure):
                    return None
                continue
            if attempts > 0:
                await asyncio.sleep(self._backoff(attempts))
            await asyncio.to_thread(gitrepo.reset_hard, self.worktree, base)
            # Retrieved on the reset tree before the attempt is stored: its context rides in the
            # same write as the attempt.
            query = f"{ctx.run.task}\n{self.phase.name}\n{self.phase.description}"
            retrieved = await ctx.retriever.retrieve(
                query, repo=self.worktree, budget_tokens=ctx.config.rag.max_context_tokens
            )
            execution, lessons = await asyncio.gather(  # a write and a read, side by side
                ctx.lifecycle.start_execution(
                    self.phase, PromptContext(query, retrieved.text, retrieved.sources)
                ),
                self._lessons(),
            )
            attempts = execution.attempt
            ctx.executions[(self.phase.plan_id, execution.attempt)] = execution.id
            ctx.log(self.phase.id, f"attempt {execution.attempt} of {self.phase.plan_id} started")
            sha, error, retriable = await self._attempt(
                execution, retrieved, lessons, previous_failure
            )
            if sha is not None:
                return sha
            await self._agent_budget()  # before another attempt (or giving up) spends more
            previous_failure = error
            if not retriable:
                ctx.log(self.phase.id, f"not retrying: {error}", "error")
                if not await self._on_exhausted(attempts, error):
                    return None

    async def _lessons(self) -> tuple[str, list[Lesson]]:
        """The Lessons section of the phase's prompt and the lessons in it."""
        ctx = self.ctx
        return await prompt_lessons(
            ctx.store,
            ctx.config.lessons,
            repo=ctx.repo,
            run_id=ctx.run_id,
            task=ctx.run.task,
            phase_name=self.phase.name,
            phase_text=self.phase.description,
        )

    async def _attempt(
        self,
        execution: Execution,
        retrieved: RetrievedContext,
        lessons_part: tuple[str, list[Lesson]],
        previous_failure: str | None,
    ) -> tuple[str | None, str, bool]:
        """One attempt with its retrieved context and lessons: execute, verify, commit. Returns
        (commit, error, retriable)."""
        ctx, phase = self.ctx, self.phase
        lessons, used = lessons_part
        if used:
            ctx.log(phase.id, lessons_line(used))
        job = PhaseJob(
            run_id=ctx.run_id,
            task=ctx.run.task,
            phase_plan_id=phase.plan_id,
            phase_name=phase.name,
            phase_description=phase.description,
            verification_criteria=phase.verification_criteria,
            attempt=execution.attempt,
            worktree=self.worktree,
            context=retrieved.text,
            relevant_files=retrieved.files,
            previous_failure=previous_failure,
            findings_feedback=await self.checks.feedback() if execution.attempt > 1 else [],
            lessons=lessons,
            host=RunAttemptHost(ctx, phase, execution),
        )

        def log(line: str, level: str = "info") -> None:
            ctx.log(phase.id, line, level)

        result: AttemptResult = await ctx.executor.execute(job, log)
        if not result.ok:
            error = result.error or "the executor failed"
            await self._fail(execution, error, result.summary, retrieved.text)
            return None, error, result.retriable
        try:
            return await self._check_and_commit(execution, result, retrieved)
        except BaseException:
            await self._report_alone()
            raise

    async def _check_and_commit(
        self, execution: Execution, result: AttemptResult, retrieved: RetrievedContext
    ) -> tuple[str | None, str, bool]:
        """Verify an attempt whose executor succeeded and commit it; _attempt's result."""
        ctx, phase = self.ctx, self.phase
        failures = await self.checks.run(execution)
        # Only a failed check and the retry right after it can make a flaky pair (core/lessons.py),
        # so a first attempt that passes records no tree: a git add and write-tree saved.
        if failures or execution.attempt > 1:
            await self._record_tree(execution)
        if failures:
            error = "verification failed:\n" + "\n".join(failures)
            await self._fail(execution, error, result.summary, retrieved.text)
            return None, error, True
        message = f"{phase.plan_id}: {phase.name}\n\n{phase.description}".strip()
        await ctx.store.ensure_fence()  # a taken-over process commits nothing (core.state.fencing)
        sha = await asyncio.to_thread(
            gitrepo.commit_all,
            self.worktree,
            message,
            ctx.trailers(phase.plan_id),
            ctx.config.git.author_name,
            ctx.config.git.author_email,
        )
        if sha is None:
            error = "the attempt changed no file"
            await self._fail(execution, error, result.summary, retrieved.text)
            return None, error, True
        await ctx.lifecycle.execution_to(
            execution,
            ExecutionStatus.SUCCEEDED,
            output=result.summary,
            context=retrieved.text,
            say=f"attempt {execution.attempt} succeeded: commit {sha[:10]}",
            artifacts=await self._report(),
        )
        return sha, "", True

    async def _report(self) -> list[StagedArtifact]:
        """The attempt's verification report once its file is written (none when no check ran),
        for the attempt's end to store."""
        task, self.checks.pending_report = self.checks.pending_report, None
        return await self._staged(task)

    async def _report_alone(self) -> None:
        """After an error between the checks and the attempt's end: the report's row on its own,
        so the report of a failed attempt stays listed."""
        task, self.checks.pending_report = self.checks.pending_report, None
        await self._record_alone(task)

    @staticmethod
    async def _staged(task: asyncio.Task[StagedArtifact] | None) -> list[StagedArtifact]:
        """What a background artifact write staged, once it is done (none for no task)."""
        return [] if task is None else [await task]

    async def _record_alone(self, task: asyncio.Task[StagedArtifact] | None) -> None:
        """Store a background artifact write's row in a write of its own, when no transition
        will carry it; a failure here is logged, not raised over the error being handled."""
        try:
            for staged in await self._staged(task):
                await self.ctx.record_staged(staged)
        except OrchestratorError as exc:  # the store or the artifact store refused
            self.ctx.log(self.phase.id, f"an artifact was not recorded: {exc}", "warning")

    async def _record_tree(self, execution: Execution) -> None:
        """Store the tree the checks saw (they ran on it just now), so a check that fails and then
        passes on the same files is known flaky (core/lessons.py); a git failure only loses that."""
        try:
            tree = await asyncio.to_thread(gitrepo.tree_of_worktree, self.worktree)
        except GitError as exc:
            self.ctx.log(self.phase.id, f"tree of attempt {execution.attempt} not recorded: {exc}")
            return
        await self.ctx.store.set_execution_tree(execution.id, tree)

    async def _fail(self, execution: Execution, error: str, output: str, context: str) -> None:
        error, output = redact(error), redact(output)
        await self.ctx.lifecycle.execution_to(
            execution,
            ExecutionStatus.FAILED,
            error=error,
            output=output,
            context=context,
            say=f"attempt {execution.attempt} failed: {error}",
            level="warning",
            artifacts=await self._report(),
        )

    def _backoff(self, attempts_done: int) -> float:
        """Exponential backoff with jitter before attempt attempts_done+1."""
        cfg = self.ctx.config.execution
        delay = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * 2 ** (attempts_done - 1))
        return delay * (1 + cfg.backoff_jitter * random.random())

    async def _last_failure(self) -> str | None:
        executions = await self.ctx.store.get_executions(self.ctx.run_id, phase_id=self.phase.id)
        failed = [e for e in executions if e.status is ExecutionStatus.FAILED]
        return failed[-1].error if failed else None

    async def _granted_extra_attempts(self) -> int:
        items = await self.ctx.store.list_interventions(run_id=self.ctx.run_id)
        return sum(
            1
            for i in items
            if i.phase_id == self.phase.id
            and i.kind is InterventionKind.PHASE_FAILED
            and i.status is InterventionStatus.APPROVED
        )

    async def _on_exhausted(self, attempts: int, error: str | None) -> bool:
        """Apply `execution.on_phase_failure`; True means one more attempt was granted."""
        ctx = self.ctx
        policy = ctx.config.execution.on_phase_failure
        reason = f"phase {self.phase.plan_id} '{self.phase.name}' failed: {(error or '')[:500]}"
        if policy == "ask":
            answer = await ctx.gate.decide(
                InterventionKind.PHASE_FAILED,
                phase_id=self.phase.id,
                key=f"after-attempt-{attempts}",
                reason=reason,
                action_required="approve: grant one more attempt; reject: fail the run",
            )
            if answer.status is InterventionStatus.APPROVED:
                return True
            await self._set_status(PhaseStatus.FAILED, error=error)
            raise RunAborted(f"phase {self.phase.plan_id} failed and the retry was rejected")
        await self._set_status(PhaseStatus.FAILED, error=error)
        if policy == "abort":
            raise RunAborted(reason)
        return False

    # ---- delivery ----------------------------------------------------------------------------------

    async def _deliver(self, sha: str) -> PhaseStatus:
        """Merge the phase branch into the run branch and mark the phase completed with its
        commit (and its diff, written while the merge runs)."""
        ctx = self.ctx
        diff = await self._start_diff(sha)
        try:
            async with ctx.git_lock:
                await ctx.store.ensure_fence()  # nor merges into the run branch
                try:
                    await asyncio.to_thread(
                        worktrees.merge_branch,
                        ctx.run_worktree,
                        self.branch,
                        f"Merge {self.phase.plan_id} '{self.phase.name}' into the run branch",
                        ctx.config.git.author_name,
                        ctx.config.git.author_email,
                    )
                except MergeConflictError as conflict:
                    if not await self._resolve_conflict(sha, conflict):
                        return PhaseStatus.FAILED
                if ctx.origin is not None and ctx.run.branch:
                    # Pushed before the phase is recorded done: a run continued on another
                    # machine starts from what the origin has, so no recorded phase is ever
                    # missing there.
                    await asyncio.to_thread(
                        remote.push_branch, ctx.repo, ctx.origin, ctx.run.branch, ctx.run_id
                    )
                    ctx.log(self.phase.id, f"pushed {ctx.run.branch} to {ctx.origin}")
            done, diff = diff, None
            await self._set_status(
                PhaseStatus.COMPLETED, commit=sha, artifacts=await self._staged(done)
            )
        finally:
            await self._record_alone(diff)  # a phase failed at its merge keeps its diff listed
        return PhaseStatus.COMPLETED

    async def _start_diff(self, sha: str) -> asyncio.Task[StagedArtifact] | None:
        """The phase commit's diff, being written to the artifact store (None when
        artifacts.save_diffs is off); the caller stores its row."""
        ctx = self.ctx
        if not ctx.config.artifacts.save_diffs:
            return None
        text = await asyncio.to_thread(gitrepo.diff_of_commit, self.worktree, sha)
        path = run_paths.phase_diff(ctx.paths, ctx.run_id, self.phase.plan_id)
        return asyncio.create_task(ctx.stage_artifact(self.phase.id, path, text, "diff"))

    async def _resolve_conflict(self, sha: str, conflict: MergeConflictError) -> bool:
        ctx = self.ctx
        files = ", ".join(conflict.files) or "unknown files"
        answer = await ctx.gate.decide(
            InterventionKind.MERGE_CONFLICT,
            phase_id=self.phase.id,
            key=f"merge-{sha}",
            reason=f"merging {self.phase.plan_id} into the run branch conflicts in {files}; "
            f"resolve it in {ctx.run_worktree}",
            action_required="approve: after you resolved and staged the files there; reject: fail this phase",
        )
        if answer.status is InterventionStatus.APPROVED:
            try:
                await asyncio.to_thread(
                    worktrees.finish_merge,
                    ctx.run_worktree,
                    f"Merge {self.phase.plan_id} '{self.phase.name}' (conflict resolved by hand)",
                    ctx.config.git.author_name,
                    ctx.config.git.author_email,
                )
                return True
            except GitError as exc:
                await self._set_status(PhaseStatus.FAILED, error=str(exc))
                return False
        await asyncio.to_thread(worktrees.abort_merge, ctx.run_worktree)
        await self._set_status(PhaseStatus.FAILED, error=f"merge conflict in {files} (rejected)")
        return False

    async def _set_status(
        self,
        status: PhaseStatus,
        *,
        error: str | None = None,
        commit: str | None = None,
        artifacts: Sequence[StagedArtifact] = (),
        **git: str,
    ) -> None:
        self.phase = await self.ctx.lifecycle.phase_to(
            self.phase, status, error=error, commit=commit, artifacts=artifacts, **git
        )
