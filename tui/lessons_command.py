"""`orchestrator lessons [--repo PATH] [--json]`, `lessons show ID`, `lessons forget ID`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InputError

if TYPE_CHECKING:
    from core.engine import Engine
    from core.records import Lesson


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "lessons",
        help="what earlier runs taught, per repository: list, show one, or forget one",
        description="Lessons are learned when a run ends (phases that failed and why, findings "
        "that came back) and go into later prompts on the same repository. `lessons` lists "
        "them (every repository's without --repo), `lessons show ID` prints one, `lessons "
        "forget ID` keeps it out of prompts for good.",
    )
    p.add_argument(
        "action", nargs="?", choices=["list", "show", "forget"], default="list", help="default list"
    )
    p.add_argument("lesson_id", nargs="?", metavar="ID", help="the lesson of show and forget")
    p.add_argument("--repo", help="only the lessons of this repository (any clone of it)")
    p.add_argument("--json", action="store_true")


def lesson_json(le: Lesson) -> dict[str, Any]:
    """A lesson as `lessons --json` prints it."""
    return {
        "id": le.id,
        "status": "forgotten" if le.forgotten else "active",
        "repo": le.repo,
        "repo_key": le.repo_key,
        "kind": le.kind,
        "subject": le.subject,
        "task": le.task,
        "text": le.text,
        "runs": le.runs,
        "forgotten_runs": le.forgotten_runs,
        "forgotten_at": le.forgotten_at,
        "forgotten_by": le.forgotten_by,
        "created_at": le.created_at,
        "updated_at": le.updated_at,
    }


async def lessons_command(engine: Engine, args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.lesson_id:
            raise InputError(f"lessons {args.lesson_id}: say `lessons show {args.lesson_id}`")
        repo = Path(args.repo).expanduser().resolve() if args.repo else None
        items = await engine.lessons(repo)
        if args.json:
            print(json.dumps([lesson_json(le) for le in items], indent=2))
            return 0
        if not items:
            where = f" for {repo}" if repo else ""
            print(f"no lessons{where} yet; they are learned when a run ends")
            return 0
        print(f"{'ID':<12} {'STATUS':<10} {'KIND':<17} {'RUNS':<5} {'REPO':<30} LESSON")
        for le in items:
            status = "forgotten" if le.forgotten else "active"
            print(
                f"{le.id:<12} {status:<10} {le.kind:<17} {len(le.runs):<5} "
                f"{_tail(le.repo, 30):<30} {le.text[:70]}"
            )
        return 0
    if not args.lesson_id:
        raise InputError(
            f"lessons {args.action} needs a lesson id; `orchestrator lessons` lists them"
        )
    if args.action == "forget":
        item = await engine.forget_lesson(args.lesson_id)
    else:
        item = await engine.lesson(args.lesson_id)
    if args.json:
        print(json.dumps(lesson_json(item), indent=2))
        return 0
    if args.action == "forget":
        print(
            f"lesson {item.id} forgotten: later prompts leave it out, and its runs never teach it again"
        )
        return 0
    data = lesson_json(item)
    for key in ("id", "status", "kind", "subject", "repo", "repo_key", "task"):
        print(f"{key + ':':<16}{data[key]}")
    print(f"{'runs:':<16}{', '.join(item.runs) or '-'}")
    if item.forgotten:
        print(f"{'forgotten:':<16}{item.forgotten_at} by {item.forgotten_by}")
        print(f"{'forgotten runs:':<16}{', '.join(item.forgotten_runs)}")
    print(f"{'learned:':<16}{item.created_at} (last {item.updated_at})")
    print(f"\n{item.text}")
    return 0


def _tail(text: str, width: int) -> str:
    """The end of a long path, which tells repositories apart better than its start."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]
