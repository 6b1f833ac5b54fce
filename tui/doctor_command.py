"""`orchestrator doctor [--json] [--fix]`: the home's health, and its repair."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from config.paths import Paths
from core.readonly import refuse_write

if TYPE_CHECKING:
    from core.doctor import DoctorReport

# core.doctor (git, the store) and config.loader (pydantic) load only when doctor runs: this
# module is imported to build every command's parser.


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "doctor",
        help="check the home: database integrity, WAL, schema, stranded runs, leftovers, disk use",
    )
    p.add_argument(
        "--fix",
        action="store_true",
        help="list each repair, then do it (recover a damaged database, record stranded runs, "
        "remove orphan worktrees, branches under the prefix and index folders)",
    )
    p.add_argument("--json", action="store_true")


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def _print(report: DoctorReport, fixed: bool) -> None:
    db = report.database
    print(
        f"home:       {report.home} ({_mib(report.disk.get('home_bytes', 0))} used, "
        f"{_mib(report.disk.get('free_bytes', 0))} free)"
    )
    postgres = db.path.startswith(("postgresql:", "postgres:"))
    if not db.exists:
        print(
            f"database:   {db.path} " + ("cannot be reached" if postgres else "does not exist yet")
        )
    elif postgres:
        print(f"database:   {db.path} (PostgreSQL, {_mib(db.bytes)}): ok")
    else:
        state = "ok" if not db.damaged else "DAMAGED: " + "; ".join(db.integrity[:3])
        print(f"database:   {db.path} ({_mib(db.bytes)}, WAL {_mib(db.wal_bytes)}): {state}")
    if db.exists and not db.damaged:
        pending = f", pending: {', '.join(db.pending_migrations)}" if db.pending_migrations else ""
        print(
            f"schema:     {len(db.applied_migrations)} of {db.known_migrations} migrations{pending}"
        )
    print(f"stranded:   {len(report.stranded_runs)} run(s) " + " ".join(report.stranded_runs))
    print(f"worktrees:  {len(report.orphan_worktrees)} orphan folder(s)")
    print(
        f"branches:   {len(report.branches)} under {report.branch_prefix!r}, "
        f"{len(report.orphan_branches)} orphan"
    )
    print(
        f"indexes:    {report.index_folders} folder(s), {len(report.orphan_indexes)} of gone repositories"
    )
    if report.problems:
        print("problems found (the fixes above were for these):" if fixed else "problems:")
        for problem in report.problems:
            print(f"  - {problem}")
    else:
        print("no problems found")


async def doctor_command(args: argparse.Namespace, paths: Paths, *, read_only: bool) -> int:
    """0 when the home is healthy (or every fix worked), 1 when problems remain."""
    from config.loader import load_config
    from core.doctor import run_doctor

    if args.fix and read_only:
        from core.readonly import read_only_reason

        raise refuse_write(
            "doctor --fix", read_only_reason(paths) or f"the home {paths.home} is read-only"
        )
    prefix = load_config(paths, env=os.environ).config.git.branch_prefix
    say = (lambda text: print(text, file=sys.stderr)) if args.json else print
    report = await run_doctor(paths, fix=args.fix, read_only=read_only, prefix=prefix, say=say)
    doc = report.as_json()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print(report, fixed=bool(report.actions))
    return 0 if doc["healthy"] and not report.database.damaged else 1
