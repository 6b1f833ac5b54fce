"""The engine's use of verify/: steps and options from configuration, tool environments, baselines."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from config.schema import CategoryLimit, FindingsThresholds, VerificationConfig
from core.procenv import safe_env
from verify.basic import VerifyStep, configured_steps
from verify.detect import detect_steps
from verify.pipeline import VerifyOptions, tool_path_dirs
from verify.severity import SeverityPolicy

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


def steps_key(steps: list[VerifyStep]) -> str:
    """A short hash of what the steps run, so a cached baseline is reused only for the same commands."""
    text = json.dumps([[s.category, s.command, s.parser, s.tool] for s in steps])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def tool_env(*trees: Path) -> dict[str, str]:
    """The environment verification commands run in: no secrets, the trees' tool folders first on PATH."""
    extra: list[str] = []
    for tree in trees:
        extra += [d for d in tool_path_dirs(tree) if d not in extra]
    return safe_env(extra_path=extra)


def category_limits(t: FindingsThresholds) -> dict[str, tuple[int, str]]:
    """Per-category limits with their actions; a bare number takes on_major_exceeded."""
    out: dict[str, tuple[int, str]] = {}
    for category, limit in t.per_category.items():
        if isinstance(limit, CategoryLimit):
            out[category] = (limit.max, limit.on_exceeded)
        else:
            out[category] = (int(limit), t.on_major_exceeded)
    return out
