"""`orchestrator acp`: serve the Agent Client Protocol on stdin/stdout for an editor (Zed, JetBrains,
Neovim...). Only protocol messages reach stdout: everything else, including what tools and
subprocesses print, goes to stderr, and subprocesses read /dev/null instead of the protocol."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.paths import Paths
from core.errors import InputError

if TYPE_CHECKING:
    from config.loader import LoadedConfig

# The stdin reader's line limit: a prompt with embedded files can be large.
_LINE_LIMIT = 50 * 1024 * 1024


def add_parser(sub: Any) -> None:
    from tui.cli import add_model_options

    p = sub.add_parser(
        "acp",
        help="act as an ACP agent on stdin/stdout: an editor's prompt starts a run in its folder",
    )
    p.add_argument(
        "--yes", action="store_true", help="approve risk and threshold interventions as they come"
    )
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also send the live log (model output, commands) as the agent's thoughts",
    )
    add_model_options(p)


def _protocol_stdio() -> tuple[int, int]:
    """Keep stdin and stdout for the protocol (as new descriptors) and point descriptors 0 and 1
    at /dev/null and stderr, so no print or subprocess can read or corrupt the protocol."""
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


async def _streams(
    proto_in: int, proto_out: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(proto_in, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(proto_out, "wb", buffering=0)
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agent-orchestrator")
    except PackageNotFoundError:
        return "unknown"


async def acp_command(args: argparse.Namespace, paths: Paths) -> int:
    from config.loader import load_config
    from core.acp_agent import OrchestratorAgent
    from core.acp_link import serve
    from core.engine import Engine
    from tui.commands import _CLI_LABELS, _cli_overrides

    proto_in, proto_out = _protocol_stdio()
    overrides = _cli_overrides(args)  # checks --replay's file before any editor connects
    user = load_config(paths, env=os.environ)

    def load(repo: Path) -> LoadedConfig:
        return load_config(paths, repo=repo, env=os.environ, cli=overrides, cli_labels=_CLI_LABELS)

    async with await Engine.open(paths, logging=user.config.logging) as engine:
        agent = OrchestratorAgent(
            engine,
            load,
            auto_approve=args.yes,
            allow_dirty=args.allow_dirty,
            verbose=args.verbose,
            version=_version(),
        )
        try:
            reader, writer = await _streams(proto_in, proto_out)
        except ValueError as exc:  # a regular file: asyncio reads and writes pipes and terminals
            raise InputError(
                f"orchestrator acp speaks the Agent Client Protocol on stdin and stdout, which "
                f"must be pipes or a terminal ({exc}); let your editor start it"
            ) from None
        main = asyncio.create_task(serve(agent, reader, writer))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, main.cancel)
        try:
            await main
        except asyncio.CancelledError:
            pass  # a signal: serve() stopped the runs it drove (interrupted, resumable)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    return 0
