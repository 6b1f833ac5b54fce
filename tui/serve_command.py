"""The `serve` command's arguments and entry; the server itself (tui/serve.py) loads only when run."""

from __future__ import annotations

import argparse

from config.paths import Paths


async def serve_command(args: argparse.Namespace, paths: Paths) -> int:
    """`orchestrator [--db URL] [--as NAME] serve [--host H] [--port N]`: each tab's app gets
    the same --db and --as."""
    from tui.serve import serve

    return await serve(
        paths.home,
        args.host,
        args.port,
        db_url=getattr(args, "db", None),
        as_name=getattr(args, "as_name", None),
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="serve the app to a browser (textual-serve), behind a token in the URL it prints",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other address is reachable by others "
        "and warned about)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on (default 8000; 0 picks a free one)",
    )
