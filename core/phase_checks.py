"""Verification of one phase attempt: run the checks, track findings by fingerprint, build feedback."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from core import run_paths
from core.artifacts import StagedArtifact
from core.attempt_host import AGENT_WATCH_TOOL
from core.context import RunContext
from core.events import FindingRecorded, VerificationCompleted
from core.procenv import redact, secret_redactor
from core.records import (
    Category,
    Execution,
    Finding,
    FindingIn,
    FindingStatus,
    InterventionKind,
    InterventionStatus,
    Phase,
    Severity,
)
from core.verification import resolve_steps, tool_env, tree_cache, verify_options
from verify.basic import VerifyStep
from verify.criteria import criteria_commands, is_allowed
from verify.findings import VerifyFinding
from verify.pipeline import VerifyReport, run_steps
from verify.severity import SEVERITY_RANK

OPEN_STATUSES = (FindingStatus.NEW, FindingStatus.OPEN)
_FEEDBACK_DETAILS_CHARS = 800


def finding_in(vf: VerifyFinding, fp: str) -> FindingIn:
    """A parsed finding as the store takes it, secrets redacted."""
    return FindingIn(
        category=Category(vf.category),
        severity=Severity(vf.severity),
        tool=vf.tool,
        message=redact(vf.message),
        rule=vf.rule,
        path=vf.path,
        line=vf.line,
        column=vf.column,
        fingerprint=fp,
        end_line=vf.end_line,
        end_column=vf.end_column,
        snippet=redact(vf.snippet) if vf.snippet else None,
        details=redact(vf.details) if vf.details else None,
        help_url=vf.help_url,
    )


class PhaseChecks:
    """Runs a phase's verification in its worktree and keeps its findings: new, open or resolved;
    problems the base commit already had are baseline and neither block nor count."""

    def __init__(self, ctx: RunContext, phase: Phase, worktree: Path) -> None:
        self.ctx = ctx
        self.phase = phase
        self.worktree = worktree
        # The last run's report, being written (PhaseRunner stores its row with the attempt).
        self.pending_report: asyncio.Task[StagedArtifact] | None = None

    async def run(self, execution: Execution) -> list[str]:
        """Run the checks; store findings by fingerprint; return the blocking (new major) ones."""
        ctx, vcfg = self.ctx, self.ctx.config.verification
        if not vcfg.enabled:
            return []
        steps, _origin = await asyncio.to_thread(resolve_steps, vcfg, self.worktree)
        steps += await self._criteria_steps()
        if not steps:
            return []
        folder = run_paths.attempt_reports(
            ctx.paths, ctx.run_id, self.phase.plan_id, execution.attempt
        )
        report = await run_steps(
            steps,
            self.worktree,
            reports_dir=folder,
            cache_dir=tree_cache(ctx.paths, self.worktree),
            env=tool_env(self.worktree, ctx.repo),
            options=verify_options(vcfg),
            redact=secret_redactor(),
            on_line=lambda line: ctx.log(self.phase.id, line, "verify"),
        )
        for note in report.notes:
            ctx.log(self.phase.id, f"verification: {note}", "warning")
        await ctx.save_outputs(folder)
        await self._save_report(execution, report)
        baseline = await self._baseline_fingerprints()
        found = [
            (vf, fp)
            for vf, fp in zip(report.findings, report.fingerprints, strict=True)
            if fp not in baseline
        ]
        await self._record_findings(execution, found)
        blocking = [
            f"[{vf.severity}] {_where(vf.path, vf.line)}{vf.message.splitlines()[0]}"
            for vf, _fp in found
            if vf.severity == Severity.MAJOR
        ]
        by_severity: dict[str, int] = {}
        for vf, _fp in found:
            by_severity[vf.severity] = by_severity.get(vf.severity, 0) + 1
        await ctx.emit(
            VerificationCompleted(
                run_id=ctx.run_id,
                phase_id=self.phase.id,
                execution_id=execution.id,
                findings=len(found),
                blocking=len(blocking),
                by_severity=by_severity,
                notes=tuple(report.notes),
            )
        )
        return blocking

    async def _criteria_steps(self) -> list[VerifyStep]:
        """Commands the phase's criteria name: allowed ones run, others only after a `command` approval."""
        ctx = self.ctx
        steps = []
        for command in criteria_commands(self.phase.verification_criteria):
            if not is_allowed(command, ctx.config.verification.allowed_commands):
                digest = hashlib.sha1(command.encode(), usedforsecurity=False).hexdigest()[:12]
                answer = await ctx.gate.decide(
                    InterventionKind.COMMAND,
                    phase_id=self.phase.id,
                    key=f"command-{digest}",
                    reason=f"phase {self.phase.plan_id}'s verification criteria name the command "
                    f"`{command}`, which verification.allowed_commands does not allow",
                    action_required="approve: run it in the phase's worktree as a custom check; "
                    "reject: do not run it",
                )
                if answer.status is not InterventionStatus.APPROVED:
                    ctx.log(self.phase.id, f"not running `{command}`: rejected", "warning")
                    continue
            steps.append(VerifyStep("custom", command, source="criteria"))
        return steps

    async def _baseline_fingerprints(self) -> set[str]:
        """Fingerprints of the run's baseline findings (read once a run: core.baseline stores
        them before the first phase starts)."""
        ctx = self.ctx
        if ctx.baseline_fingerprints is None:
            stored = await ctx.store.get_findings(ctx.run_id, status=FindingStatus.BASELINE)
            ctx.baseline_fingerprints = {f.fingerprint for f in stored}
        return ctx.baseline_fingerprints

    async def _record_findings(
        self, execution: Execution, found: list[tuple[VerifyFinding, str]]
    ) -> None:
        """Store new findings once; a fingerprint seen again stays open; one not seen again is resolved."""
        ctx = self.ctx
        if not found and execution.attempt == 1:
            return  # nothing found, and no earlier attempt whose findings could now be resolved
        existing = {
            f.fingerprint: f
            for f in await ctx.store.get_findings(ctx.run_id, phase_id=self.phase.id)
            if f.status in OPEN_STATUSES and f.tool != AGENT_WATCH_TOOL  # not verification's
        }
        seen: set[str] = set()
        fresh: list[FindingIn] = []
        for vf, fp in found:
            if fp in seen:
                continue
            seen.add(fp)
            if fp in existing:
                if existing[fp].status is FindingStatus.NEW:
                    await ctx.store.update_finding_status(existing[fp].id, FindingStatus.OPEN)
                continue
            fresh.append(finding_in(vf, fp))
        stored = await ctx.store.add_findings(ctx.run_id, self.phase.id, execution.id, fresh)
        ctx.findings_stored += len(stored)
        for finding in stored:
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

    async def feedback(self) -> list[str]:
        """The findings the last attempt introduced or left open, most severe first, capped."""
        limit = self.ctx.config.verification.feedback_max_findings
        findings = await self.ctx.store.get_findings(self.ctx.run_id, phase_id=self.phase.id)
        open_ones = sorted(
            (f for f in findings if f.status in OPEN_STATUSES),
            key=lambda f: (SEVERITY_RANK.get(f.severity, 1), f.status is not FindingStatus.OPEN),
        )
        lines = [feedback_line(f) for f in open_ones[:limit]]
        if len(open_ones) > limit:
            lines.append(f"... and {len(open_ones) - limit} more finding(s) not listed here")
        return lines

    async def _save_report(self, execution: Execution, report: VerifyReport) -> None:
        """A plain-text report of the attempt's commands, exit codes, parsers and output tails."""
        ctx = self.ctx
        path = run_paths.attempt_report_file(
            ctx.paths, ctx.run_id, self.phase.plan_id, execution.attempt
        )
        parts = []
        for o in report.outcomes:
            if o.result is None:
                parts.append(f"$ {o.command}\nskipped: {o.skipped}")
                continue
            r = o.result
            parts.append(
                f"$ {o.command}\nexit: {r.exit_code}{' (timed out)' if r.timed_out else ''} "
                f"in {r.duration_seconds:.2f}s; parsed as {o.parser or 'nothing'}; "
                f"{o.findings} finding(s); output kept in {o.output_file}\n{r.output}"
            )
        # Written while the attempt goes on; its row is stored with the attempt's end.
        self.pending_report = asyncio.create_task(
            ctx.stage_artifact(self.phase.id, path, "\n\n".join(parts), "report")
        )


def _where(path: str | None, line: int | None) -> str:
    if not path:
        return ""
    return f"{path}:{line}: " if line else f"{path}: "


def feedback_line(f: Finding) -> str:
    """One finding for a prompt: severity, whether it is new or still open, where, what, and the
    start of the tool's details (a traceback, a fix hint)."""
    state = "still open" if f.status is FindingStatus.OPEN else "new"
    rule = f" {f.rule}" if f.rule else ""
    text = f"[{f.severity}, {state}] {f.category}/{f.tool}{rule} {_where(f.path, f.line)}{f.message[:1500]}"
    if f.snippet:
        text += f"\n  line: {f.snippet}"
    if f.details and f.details not in f.message:
        text += "\n  " + f.details[:_FEEDBACK_DETAILS_CHARS].replace("\n", "\n  ")
    return text
