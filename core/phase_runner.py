"""One phase from start to commit: risk approval, attempts with backoff, verification, commit, merge."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from core.context import RunContext
from core.errors import GitError, MergeConflictError
from core.events import (
    ArtifactRecorded,
    ExecutionFinished,
    ExecutionStarted,
    FindingRecorded,
    PhaseStatusChanged,
)
from core.executors.base import AttemptResult, PhaseJob
from core.git import repo as gitrepo
from core.git import worktrees
from core.procenv import redact, safe_env
from core.records import (
    RISK_ORDER,
    Category,
    Execution,
    ExecutionStatus,
    FindingIn,
    FindingStatus,
    InterventionKind,
    InterventionStatus,
    Phase,
    PhaseStatus,
    Severity,
)
from verify.basic import configured_steps, run_basic
from verify.findings import VerifyFinding, fingerprint

SEVERITY_RANK = {"major": 0, "medium": 1, "minor": 2}
OPEN_STATUSES = (FindingStatus.NEW, FindingStatus.OPEN)


class RunAborted(Exception):
    """The run must stop as failed (policy `abort`, or a rejected decision that fails the run)."""


class PhaseRunner:
    """Carries one phase through its attempts; the scheduler runs several of these concurrently."""

    def __init__(self, ctx: RunContext, phase: Phase) -> None:
        self.ctx = ctx
        self.phase = phase
        self.worktree = ctx.phase_worktree(phase.plan_id)
        self.branch = ctx.phase_branch(phase.plan_id)

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
        return await self._deliver(sha)

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
        base = self.phase.base_commit or await asyncio.to_thread(
            gitrepo.head_commit_of, ctx.run_worktree
        )
        await self._set_status(
            PhaseStatus.IN_PROGRESS,
            base_commit=base,
            branch=self.branch,
            worktree=str(self.worktree),
        )
        base = self.phase.base_commit or base
        async with ctx.git_lock:
            await asyncio.to_thread(
                worktrees.create_worktree, ctx.repo, self.worktree, self.branch, base
            )
        return base

    async def _recover_interrupted_attempt(self) -> str | None:
        """After a crash: adopt a phase commit the dead process made, else close its attempt as failed."""
        ctx = self.ctx
        executions = await ctx.store.get_executions(ctx.run_id, phase_id=self.phase.id)
        running = [e for e in executions if e.status is ExecutionStatus.RUNNING]
        sha = await asyncio.to_thread(
            gitrepo.find_commit_with_trailers,
            self.worktree,
            self.branch,
            ctx.trailers(self.phase.plan_id),
        )
        for execution in running:
            if sha is not None and execution is running[-1]:
                await ctx.store.complete_execution(
                    execution.id, "recovered: the phase commit was found after a restart"
                )
                await self._announce_execution(execution, ExecutionStatus.SUCCEEDED, None)
            else:
                error = "interrupted: the orchestrator stopped during this attempt"
                await ctx.store.fail_execution(execution.id, error)
                await self._announce_execution(execution, ExecutionStatus.FAILED, error)
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
            execution = await ctx.store.create_execution(self.phase.id, ctx.run_id)
            attempts = execution.attempt
            ctx.executions[(self.phase.plan_id, execution.attempt)] = execution.id
            await ctx.emit(
                ExecutionStarted(
                    run_id=ctx.run_id,
                    phase_id=self.phase.id,
                    execution_id=execution.id,
                    attempt=execution.attempt,
                )
            )
            ctx.log(self.phase.id, f"attempt {execution.attempt} of {self.phase.plan_id} started")
            sha, error, retriable = await self._attempt(execution, previous_failure)
            if sha is not None:
                return sha
            previous_failure = error
            if not retriable:
                ctx.log(self.phase.id, f"not retrying: {error}", "error")
                if not await self._on_exhausted(attempts, error):
                    return None

    async def _attempt(
        self, execution: Execution, previous_failure: str | None
    ) -> tuple[str | None, str, bool]:
        """One attempt: execute, verify, commit. Returns (commit, error, retriable)."""
        ctx, phase = self.ctx, self.phase
        retrieved = await ctx.retriever.retrieve(
            f"{ctx.run.task}\n{phase.name}\n{phase.description}",
            repo=self.worktree,
            budget_tokens=ctx.config.rag.max_context_tokens,
        )
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
            findings_feedback=await self._findings_feedback() if execution.attempt > 1 else [],
        )
        result: AttemptResult = await ctx.executor.execute(
            job, lambda line, level="info": ctx.log(phase.id, line, level)
        )
        if not result.ok:
            error = result.error or "the executor failed"
            await self._fail(execution, error, result.summary, retrieved.text)
            return None, error, result.retriable
        failures = await self._verify(execution)
        if failures:
            error = "verification failed:\n" + "\n".join(failures)
            await self._fail(execution, error, result.summary, retrieved.text)
            return None, error, True
        message = f"{phase.plan_id}: {phase.name}\n\n{phase.description}".strip()
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
        await ctx.store.complete_execution(execution.id, result.summary, context=retrieved.text)
        await self._announce_execution(execution, ExecutionStatus.SUCCEEDED, None)
        ctx.log(phase.id, f"attempt {execution.attempt} succeeded: commit {sha[:10]}")
        return sha, "", True

    async def _fail(self, execution: Execution, error: str, output: str, context: str) -> None:
        error, output = redact(error), redact(output)
        await self.ctx.store.fail_execution(execution.id, error, output=output, context=context)
        await self._announce_execution(execution, ExecutionStatus.FAILED, error)
        self.ctx.log(self.phase.id, f"attempt {execution.attempt} failed: {error}", "warning")

    async def _announce_execution(
        self, execution: Execution, status: ExecutionStatus, error: str | None
    ) -> None:
        await self.ctx.emit(
            ExecutionFinished(
                run_id=self.ctx.run_id,
                phase_id=self.phase.id,
                execution_id=execution.id,
                attempt=execution.attempt,
                status=str(status),
                error=error,
            )
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

    # ---- verification ----------------------------------------------------------------------------

    async def _verify(self, execution: Execution) -> list[str]:
        """Run the configured commands; store findings by fingerprint; return the blocking ones."""
        ctx, vcfg = self.ctx, self.ctx.config.verification
        steps = configured_steps(
            {
                "build": vcfg.build,
                "test": vcfg.test,
                "lint": vcfg.lint,
                "security": vcfg.security,
                "custom": vcfg.custom,
            }
        )
        if not vcfg.enabled or not steps:
            return []
        extra = [
            str(p / ".venv" / "bin")
            for p in (self.worktree, ctx.repo)
            if (p / ".venv" / "bin").is_dir()
        ]
        results, found = await run_basic(
            steps,
            self.worktree,
            timeout=vcfg.timeout_seconds,
            env=safe_env(extra_path=extra),
            max_output_bytes=vcfg.max_output_bytes,
            tail_lines=vcfg.output_tail_lines,
            severity=vcfg.severity,
            on_line=lambda line: ctx.log(self.phase.id, line, "verify"),
        )
        await self._save_report(execution, results)
        await self._record_findings(execution, found)
        return [f.message.splitlines()[0] for f in found if f.severity == Severity.MAJOR]

    async def _record_findings(self, execution: Execution, found: list[VerifyFinding]) -> None:
        """Store new findings once; a fingerprint seen again stays open; one not seen again is resolved."""
        ctx = self.ctx
        if not found and execution.attempt == 1:
            return  # nothing found, and no earlier attempt whose findings could now be resolved
        existing = {
            f.fingerprint: f
            for f in await ctx.store.get_findings(ctx.run_id, phase_id=self.phase.id)
            if f.status in OPEN_STATUSES
        }
        seen: set[str] = set()
        for vf in found:
            fp = fingerprint(vf.tool, vf.rule, vf.path, vf.message)
            seen.add(fp)
            if fp in existing:
                if existing[fp].status is FindingStatus.NEW:
                    await ctx.store.update_finding_status(existing[fp].id, FindingStatus.OPEN)
                continue
            finding = await ctx.store.add_finding(
                ctx.run_id,
                self.phase.id,
                execution.id,
                FindingIn(
                    category=Category(vf.category),
                    severity=Severity(vf.severity),
                    tool=vf.tool,
                    message=redact(vf.message),
                    rule=vf.rule,
                    path=vf.path,
                    line=vf.line,
                    column=vf.column,
                    fingerprint=fp,
                ),
            )
            existing[fp] = finding
            await ctx.emit(
                FindingRecorded(
                    run_id=ctx.run_id,
                    finding_id=finding.id,
                    phase_id=self.phase.id,
                    severity=finding.severity,
                    category=finding.category,
                    message=finding.message,
                )
            )
        for fp, finding in existing.items():
            if fp not in seen:
                await ctx.store.update_finding_status(finding.id, FindingStatus.RESOLVED)

    async def _findings_feedback(self) -> list[str]:
        findings = await self.ctx.store.get_findings(self.ctx.run_id, phase_id=self.phase.id)
        open_ones = sorted(
            (f for f in findings if f.status in OPEN_STATUSES),
            key=lambda f: SEVERITY_RANK[f.severity],
        )
        return [f"[{f.severity}] {f.category}/{f.tool}: {f.message[:1500]}" for f in open_ones[:10]]

    async def _save_report(self, execution: Execution, results: list) -> None:
        ctx = self.ctx
        path = (
            ctx.paths.reports / ctx.run_id / f"{self.phase.plan_id}-attempt-{execution.attempt}.txt"
        )
        text = "\n\n".join(
            f"$ {r.command}\nexit: {r.exit_code}{' (timed out)' if r.timed_out else ''} "
            f"in {r.duration_seconds:.2f}s\n{r.output}"
            for r in results
        )
        await self._artifact(path, text, "report")

    async def _artifact(self, path: Path, text: str, kind: str) -> None:
        await asyncio.to_thread(_write_text, path, redact(text))
        artifact = await self.ctx.store.add_artifact(
            self.ctx.run_id, self.phase.id, path.name, path, kind
        )
        await self.ctx.emit(
            ArtifactRecorded(
                run_id=self.ctx.run_id, artifact_id=artifact.id, name=artifact.name, type=kind
            )
        )

    # ---- delivery ----------------------------------------------------------------------------------

    async def _deliver(self, sha: str) -> PhaseStatus:
        """Merge the phase branch into the run branch and mark the phase completed with its commit."""
        ctx = self.ctx
        async with ctx.git_lock:
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
        if ctx.config.artifacts.save_diffs:
            diff = await asyncio.to_thread(gitrepo.diff_of_commit, self.worktree, sha)
            await self._artifact(
                ctx.paths.artifacts / ctx.run_id / f"{self.phase.plan_id}.diff", diff, "diff"
            )
        await self._set_status(PhaseStatus.COMPLETED, commit=sha)
        return PhaseStatus.COMPLETED

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
        **git: str,
    ) -> None:
        ctx = self.ctx
        self.phase = await ctx.store.update_phase_status(
            self.phase.id, status, error=error, commit=commit, **git
        )
        await ctx.emit(
            PhaseStatusChanged(
                run_id=ctx.run_id,
                phase_id=self.phase.id,
                plan_id=self.phase.plan_id,
                status=str(status),
                error=error,
            )
        )
        ctx.log(
            self.phase.id,
            f"phase {self.phase.plan_id} {status}" + (f": {error[:300]}" if error else ""),
        )


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
