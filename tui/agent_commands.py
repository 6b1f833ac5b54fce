"""The `agents` command: which coding agents are installed, how to install and log in to each."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.agents.detect import AgentStatus, all_statuses


def add_parsers(sub: Any) -> None:
    """The agents subcommand."""
    p = sub.add_parser(
        "agents",
        help="list the coding agents `run --agent` knows: installed, version, mode, login",
    )
    p.add_argument("--json", action="store_true")


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def render(statuses: list[AgentStatus]) -> str:
    """One block per agent: what is installed where, how a run starts it, what to do next."""
    blocks = []
    for s in statuses:
        head = f"{s.name:<9} {s.title}"
        if s.installed:
            lines = [
                head,
                f"  installed: {s.path}" + (f" ({s.version})" if s.version else ""),
                f"  mode:      {s.mode}: {' '.join(s.command)}",
                f"  logged in: {_yes_no(s.logged_in)} ({s.login_evidence})",
            ]
            if s.logged_in is not True:
                lines.append(f"  log in:    {s.login}")
            if s.problem:
                lines.append(f"  problem:   {s.problem}")
        else:
            lines = [
                head,
                "  installed: no",
                f"  install:   {s.install}",
                f"  log in:    {s.login}",
            ]
        lines.append(f"  run:       orchestrator run TASK --repo PATH --agent {s.name}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


async def agents_command(args: argparse.Namespace) -> int:
    statuses = await all_statuses()
    if args.json:
        print(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        print(render(statuses))
    return 0
