"""`orchestrator verify PATH`: check a tree with its own tools, print findings, exit 1 past a threshold."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from config.loader import LoadedConfig, load_config
from config.paths import Paths
from core.errors import InputError
from core.procenv import redact, secret_redactor
from core.verification import CATEGORY_ORDER, resolve_steps, verify_tree
from verify.report import finding_dict, summary
from verify.sarif_out import to_sarif


def _only(raw: str | None) -> set[str] | None:
    """The --only categories, refusing unknown names."""
    if raw is None:
        return None
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = sorted(names - set(CATEGORY_ORDER))
    if unknown or not names:
        raise InputError(
            f"--only {raw!r}: unknown categor{'ies' if len(unknown) > 1 else 'y'} "
            f"{', '.join(unknown) or '(none given)'}; use a comma-separated list of "
            + ",".join(CATEGORY_ORDER)
        )
    return names


async def verify_command(args: argparse.Namespace, paths: Paths) -> int:
    """Run the checks; exit 0 when no threshold is exceeded, 1 when one is, 2 for bad input."""
    tree = Path(args.path).expanduser()
    if not tree.is_dir():
        raise InputError(f"verify {args.path}: no such directory")
    tree = tree.resolve()
    only = _only(args.only)
    sarif_out = Path(args.sarif).expanduser() if args.sarif else None
    if sarif_out is not None and not sarif_out.parent.is_dir():
        raise InputError(f"--sarif {args.sarif}: folder {sarif_out.parent} does not exist")
    loaded = load_config(paths, repo=tree, env=os.environ)
    paths.ensure()

    def stream(line: str) -> None:
        print(redact(line), file=sys.stderr, flush=True)

    report, breaches, origin, folder = await verify_tree(
        paths, loaded.config, tree, only=only, on_line=stream if args.verbose else None
    )
    scrub = secret_redactor()
    findings = [
        {k: scrub(v) if isinstance(v, str) else v for k, v in finding_dict(f, fp).items()}
        for f, fp in zip(report.findings, report.fingerprints, strict=True)
    ]
    data: dict[str, Any] = {"findings": findings, "summary": summary(report, breaches, origin)}
    data["summary"]["reports"] = str(folder)
    (folder / "verify.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if sarif_out is not None:
        sarif_out.write_text(json.dumps(to_sarif(findings, tree), indent=2) + "\n", "utf-8")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_text(data, sarif_out)
    return 1 if breaches else 0


def _print_text(data: dict[str, Any], sarif_out: Path | None) -> None:
    """Steps, findings most severe first, counts, notes and thresholds, for a person."""
    s = data["summary"]
    if not s["steps"]:
        print("nothing to verify: no commands are configured and none were detected")
    for step in s["steps"]:
        head = f"[{step['category']}] {step['tool']}"
        if step["skipped"]:
            print(f"{head}: skipped: {step['skipped']}")
            continue
        state = "timed out" if step["timed_out"] else f"exit {step['exit_code']}"
        print(
            f"{head}: {state} in {step['duration_seconds']:.1f}s, {step['findings']} finding(s)"
            + (f" (parsed as {step['parser']})" if step["parser"] else "")
        )
    if data["findings"]:
        print()
    for f in data["findings"]:
        where = f" {f['location']}" + (f":{f['column']}" if f["column"] and f["line"] else "")
        rule = f" {f['rule']}" if f["rule"] else ""
        print(
            f"{f['severity']:<6} {f['category']}/{f['tool']}{rule}{where}: {f['message'].splitlines()[0]}"
        )
    sev = s["by_severity"]
    print(
        f"\n{s['total']} finding(s): {sev['major']} major, {sev['medium']} medium, "
        f"{sev['minor']} minor"
    )
    for note in s["notes"]:
        print(f"note: {note}")
    for b in s["thresholds_exceeded"]:
        print(f"threshold exceeded: {b['kind']} {b['actual']} > {b['limit']} ({b['action']})")
    print(f"reports: {s['reports']}")
    if sarif_out is not None:
        print(f"SARIF: {sarif_out}")


def detected_steps_json(loaded: LoadedConfig, repo: Path | None) -> list[dict[str, Any]]:
    """The steps `verify` and runs would use for the repository (configured, else detected)."""
    if repo is None:
        return []
    steps, _origin = resolve_steps(loaded.config.verification, repo)
    return [
        {
            "category": s.category,
            "command": s.command,
            "tool": s.tool_label,
            "parser": s.parser,
            "source": s.source,
            "requires": s.requires,
        }
        for s in steps
    ]


def detected_lines(loaded: LoadedConfig, repo: Path | None) -> str:
    """`config show --repo` lines listing the verification steps and where they came from."""
    if repo is None:
        return ""
    lines = ["", f"# verification steps for {repo}"]
    steps = detected_steps_json(loaded, repo)
    if not steps:
        lines.append("# none: nothing configured and nothing detected")
    for s in steps:
        lines.append(f"{s['category']}: {s['command']:<60}  # {s['source']}")
    return "\n".join(lines) + "\n"
