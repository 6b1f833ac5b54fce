"""`orchestrator db copy --to URL`: move a home's SQLite history into a PostgreSQL database."""

from __future__ import annotations

import argparse
import json

from config.paths import Paths


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="the state database: copy a home's history into PostgreSQL")
    actions = p.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    copy = actions.add_parser(
        "copy",
        help="copy the home's SQLite database (runs, logs, findings, usage) into an empty "
        "PostgreSQL database; refuses a database that already holds runs",
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="postgresql://USER@HOST:PORT/DATABASE (the password from the URL, "
        "state.password_file or PGPASSWORD; never stored)",
    )
    copy.add_argument("--json", action="store_true")


async def db_command(args: argparse.Namespace, paths: Paths) -> int:
    """Copy the home's database into --to; 0 on success."""
    from config.dburl import is_postgres_url, mask_url
    from core.errors import InputError

    if not is_postgres_url(args.to):
        raise InputError(
            f"--to {mask_url(args.to)}: expected a postgresql://USER@HOST:PORT/DATABASE URL"
        )
    from core.db_copy import copy_home_to

    report = await copy_home_to(paths, args.to)
    if args.json:
        print(json.dumps({"source": report.source, "target": report.target, "rows": report.rows}))
        return 0
    runs = report.rows.get("runs", 0)
    print(f"copied {runs} run(s) from {report.source} to {report.target}")
    for table, count in report.rows.items():
        print(f"  {table:22} {count} row(s)")
    print("use it with --db URL, ORCHESTRATOR__STATE__URL or state.url")
    return 0
