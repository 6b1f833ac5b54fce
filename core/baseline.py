"""The run's baseline: findings its base commit already had, verified once per commit and cached.

They are stored with status `baseline` (no phase), shown separately, and neither block an attempt
nor count against thresholds.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

from core import run_paths
from core.context import RunContext
from core.events import VerificationCompleted
from core.git import repo as gitrepo
from core.phase_checks import finding_in
from core.procenv import redact, secret_redactor
from core.records import FindingStatus
from core.verification import resolve_steps, steps_key, tool_env, tree_cache, verify_options
from verify.findings import VerifyFinding
from verify.pipeline import run_steps

CACHE_PREFIX = "verify-baseline"


async def record_baseline(ctx: RunContext) -> None:
    """Verify the base commit (or take the cached result) and store its findings as baseline, once."""
    vcfg = ctx.config.verification
    run = await ctx.store.get_run(ctx.run_id)
    if not vcfg.enabled or not vcfg.baseline or "baseline" in run.metadata or not run.base_commit:
        return
    steps, _origin = await asyncio.to_thread(resolve_steps, vcfg, ctx.run_worktree)
    if not steps:
        return
    key = f"{CACHE_PREFIX}:{run.base_commit}:{steps_key(steps)}"
    cached = await ctx.store.cache_get(key)
    if cached is not None:
        pairs = [
            (VerifyFinding(**item["finding"]), item["fingerprint"]) for item in json.loads(cached)
        ]
        ctx.log(
            None, f"baseline of {run.base_commit[:10]}: {len(pairs)} finding(s), from the cache"
        )
    else:
        head = await asyncio.to_thread(gitrepo.head_commit_of, ctx.run_worktree)
        if head != run.base_commit:
            ctx.log(
                None, "baseline skipped: the run branch has moved past its base commit", "warning"
            )
            await ctx.store.set_run_metadata(ctx.run_id, baseline={"skipped": "branch moved"})
            return
        ctx.log(None, f"verifying the base commit {run.base_commit[:10]} for the baseline")
        folder = run_paths.baseline_reports(ctx.paths, ctx.run_id)
        report = await run_steps(
            steps,
            ctx.run_worktree,
            reports_dir=folder,
            cache_dir=tree_cache(ctx.paths, ctx.run_worktree),
            env=tool_env(ctx.run_worktree, ctx.repo),
            options=verify_options(vcfg),
            redact=secret_redactor(),
            on_line=lambda line: ctx.log(None, line, "verify"),
        )
        await ctx.save_outputs(folder)
        pairs = list(zip(report.findings, report.fingerprints, strict=True))
        payload = [{"finding": asdict(f), "fingerprint": fp} for f, fp in pairs]
        await ctx.store.cache_put(key, redact(json.dumps(payload)))
    unique = {fp: f for f, fp in pairs}
    # A run stopped between storing its baseline and marking it done stores it only once.
    if not await ctx.store.get_findings(ctx.run_id, status=FindingStatus.BASELINE):
        await ctx.store.add_findings(
            ctx.run_id,
            None,
            None,
            [finding_in(f, fp) for fp, f in unique.items()],
            FindingStatus.BASELINE,
        )
    by_severity: dict[str, int] = {}
    for f in unique.values():
        by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
    await ctx.emit(
        VerificationCompleted(
            run_id=ctx.run_id,
            phase_id=None,
            execution_id=None,
            findings=len(unique),
            blocking=0,
            by_severity=by_severity,
        )
    )
    await ctx.store.set_run_metadata(
        ctx.run_id, baseline={"commit": run.base_commit, "findings": len(unique)}
    )
