"""Verification of one phase attempt: run the configured commands, track findings by fingerprint."""

from __future__ import annotations

from pathlib import Path

from core.context import RunContext
from core.events import FindingRecorded
from core.procenv import redact, safe_env
from core.records import Category, Execution, FindingIn, FindingStatus, Phase, Severity
from verify.basic import configured_steps, run_basic
from verify.findings import VerifyFinding, fingerprint
from verify.runner import CommandResult

SEVERITY_RANK = {"major": 0, "medium": 1, "minor": 2}
OPEN_STATUSES = (FindingStatus.NEW, FindingStatus.OPEN)


class PhaseChecks:
    """Runs a phase's verification in its worktree and keeps its findings: new, open or resolved."""

    def __init__(self, ctx: RunContext, phase: Phase, worktree: Path) -> None:
        self.ctx = ctx
        self.phase = phase
        self.worktree = worktree

    async def run(self, execution: Execution) -> list[str]:
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
            severity=dict(vcfg.severity.items()),
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

    async def feedback(self) -> list[str]:
        """The phase's open findings, most severe first, for the next attempt's prompt."""
        findings = await self.ctx.store.get_findings(self.ctx.run_id, phase_id=self.phase.id)
        open_ones = sorted(
            (f for f in findings if f.status in OPEN_STATUSES),
            key=lambda f: SEVERITY_RANK[f.severity],
        )
        return [f"[{f.severity}] {f.category}/{f.tool}: {f.message[:1500]}" for f in open_ones[:10]]

    async def _save_report(self, execution: Execution, results: list[CommandResult]) -> None:
        ctx = self.ctx
        path = (
            ctx.paths.reports / ctx.run_id / f"{self.phase.plan_id}-attempt-{execution.attempt}.txt"
        )
        text = "\n\n".join(
            f"$ {r.command}\nexit: {r.exit_code}{' (timed out)' if r.timed_out else ''} "
            f"in {r.duration_seconds:.2f}s\n{r.output}"
            for r in results
        )
        await ctx.save_artifact(self.phase.id, path, text, "report")
