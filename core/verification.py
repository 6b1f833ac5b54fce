"""The engine's use of verify/: steps and options from configuration, tool environments, baselines."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config.paths import Paths
from config.schema import (
    CategoryLimit,
    FindingsThresholds,
    OrchestratorConfig,
    VerificationConfig,
)
from core.paths_safe import inside
from core.procenv import safe_env, secret_redactor
from core.timeutil import utcnow
from verify.basic import VerifyStep, configured_steps
from verify.detect import detect_steps
from verify.findings import VerifyFinding
from verify.pipeline import VerifyOptions, VerifyReport, run_steps, tool_path_dirs
from verify.severity import SeverityPolicy
from verify.thresholds import Breach, check_thresholds

CATEGORY_ORDER = ("build", "test", "lint", "security", "custom")


def severity_policy(vcfg: VerificationConfig) -> SeverityPolicy:
    """The severity mapping the configuration describes."""
    return SeverityPolicy(
        by_category=dict(vcfg.severity.items()),
        by_rule=dict(vcfg.rule_severity.items()),
        by_level=dict(vcfg.level_severity.items()),
    )


def verify_options(vcfg: VerificationConfig) -> VerifyOptions:
    """Timeouts, output caps and finding limits from the configuration."""
    return VerifyOptions(
        timeout=vcfg.timeout_seconds,
        max_output_bytes=vcfg.max_output_bytes,
        max_report_bytes=vcfg.max_report_bytes,
        tail_lines=vcfg.output_tail_lines,
        max_findings=vcfg.max_findings_per_step,
        policy=severity_policy(vcfg),
    )


def configured(vcfg: VerificationConfig) -> dict[str, list[Any]]:
    """The configured commands per category."""
    return {c: list(getattr(vcfg, c)) for c in CATEGORY_ORDER}


def resolve_steps(
    vcfg: VerificationConfig, tree: Path, only: set[str] | None = None
) -> tuple[list[VerifyStep], str]:
    """The steps to run in a tree and where they came from: "configured", "detected" or "none"."""
    steps = configured_steps(configured(vcfg))
    origin = "configured"
    if not steps and vcfg.auto_detect:
        steps, origin = detect_steps(tree), "detected"
    if only is not None:
        steps = [s for s in steps if s.category in only]
    return steps, origin if steps else "none"


def tree_cache(paths: Paths, tree: Path) -> Path:
    """A cache folder for one tree's tools (mypy's cache must not mix projects)."""
    return (
        paths.cache
        / "verify"
        / hashlib.sha1(str(tree).encode(), usedforsecurity=False).hexdigest()[:12]
    )


def steps_key(steps: list[VerifyStep]) -> str:
    """A short hash of what the steps run, so a cached baseline is reused only for the same commands."""
    text = json.dumps([[s.category, s.command, s.parser, s.tool] for s in steps])
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def tool_env(*trees: Path) -> dict[str, str]:
    """The environment verification commands run in: no secrets, the trees' tool folders first on
    PATH, and the first tree's src/ (if any) and root first on PYTHONPATH, so a project installed
    in editable mode from the original checkout is imported from the tree being verified."""
    extra: list[str] = []
    for tree in trees:
        extra += [d for d in tool_path_dirs(tree) if d not in extra]
    env = safe_env(extra_path=extra)
    if trees:
        first = trees[0]
        paths = [str(first / "src")] if (first / "src").is_dir() else []
        paths.append(str(first))
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def category_limits(t: FindingsThresholds) -> dict[str, tuple[int, str]]:
    """Per-category limits with their actions; a bare number takes on_major_exceeded."""
    out: dict[str, tuple[int, str]] = {}
    for category, limit in t.per_category.items():
        if isinstance(limit, CategoryLimit):
            out[category] = (limit.max, limit.on_exceeded)
        else:
            out[category] = (int(limit), t.on_major_exceeded)
    return out


def breaches_of(
    t: FindingsThresholds, severities: dict[str, int], categories: dict[str, int]
) -> list[Breach]:
    """The configured thresholds these counts exceed, with each one's action."""
    return check_thresholds(
        severities,
        categories,
        max_major=t.max_major,
        max_medium=t.max_medium,
        on_major_exceeded=t.on_major_exceeded,
        on_medium_exceeded=t.on_medium_exceeded,
        per_category=category_limits(t),
    )


def threshold_counts(
    findings: list[VerifyFinding], dropped: dict[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """Counts by severity (dropped ones included) and by category, for check_thresholds."""
    severities = {"major": 0, "medium": 0, "minor": 0}
    categories: dict[str, int] = {}
    for f in findings:
        severities[f.severity] = severities.get(f.severity, 0) + 1
        categories[f.category] = categories.get(f.category, 0) + 1
    for severity, n in dropped.items():
        severities[severity] = severities.get(severity, 0) + n
    return severities, categories


async def verify_tree(
    paths: Paths,
    config: OrchestratorConfig,
    tree: Path,
    *,
    only: set[str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> tuple[VerifyReport, list[Breach], str, Path]:
    """Verify a tree as it is (the `verify` command): reports go under the home folder, never into
    the tree. Returns the report, the exceeded thresholds, where the steps came from, and the
    reports folder."""
    steps, origin = resolve_steps(config.verification, tree, only)
    stamp = utcnow().replace(":", "").replace("-", "").replace(".", "")
    digest = hashlib.sha1(str(tree).encode(), usedforsecurity=False).hexdigest()[:8]
    folder = inside(paths.reports, "verify", f"{stamp}-{digest}")
    report = await run_steps(
        steps,
        tree,
        reports_dir=folder,
        cache_dir=tree_cache(paths, tree),
        env=tool_env(tree),
        options=verify_options(config.verification),
        on_line=on_line,
        redact=secret_redactor(),
    )
    severities, categories = threshold_counts(report.findings, report.dropped())
    breaches = breaches_of(config.thresholds, severities, categories)
    return report, breaches, origin, folder
