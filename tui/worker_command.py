"""`orchestrator submit` (queue a run for a worker) and `orchestrator worker` (claim and drive
queued runs); the work itself is in core.queue and core.worker."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine import Engine


def add_parsers(sub: Any, add_task_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `submit` and `worker` subcommands."""
    p = sub.add_parser(
        "submit",
        help="store a run for a worker to carry out (`orchestrator worker`); prints its id",
        description="Check the repository and store a pending run with the options of `run`; a "
        "worker sharing this home or database claims and drives it. A --replay cassette's content "
        "is stored with the run; --record writes the cassette on the worker, under its home "
        "(cassettes/RUN.jsonl).",
    )
    add_task_options(p)
    p.add_argument(
        "--yes",
        action="store_true",
        help="the worker approves risk and threshold interventions as they come",
    )
    p = sub.add_parser(
        "worker",
        help="claim submitted runs and carry them out until stopped (SIGTERM or Ctrl-C)",
        description="Claim queued runs (oldest first, and runs whose worker's lease expired) and "
        "drive each as `run` does, renewing its lease. On SIGTERM or Ctrl-C it stops claiming, "
        "stores what it drives as interrupted, releases it for the next worker and exits 0. "
        "Restarted with the same --id it takes its own runs back at once; another worker takes "
        "them once their lease (execution.lease_seconds) expires.",
    )
    p.add_argument(
        "--id",
        dest="worker_id",
        metavar="NAME",
        help="this worker's name, kept across restarts (default: the host name); give each "
        "worker on one machine its own",
    )
    p.add_argument(
        "--max-parallel",
        type=int,
        default=1,
        metavar="N",
        help="runs driven at once (default 1)",
    )
    p.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often to look for queued runs while idle (default 1)",
    )
    p.add_argument(
        "--until-idle",
        action="store_true",
        help="exit once no queued run is left and nothing is being driven",
    )


async def submit_command(engine: Engine, args: argparse.Namespace) -> int:
    from config.loader import load_config
    from tui.commands import _CLI_LABELS, _cli_overrides

    repo = await engine.checkout(args.repo)  # a git URL is cloned or fetched into the home
    overrides = _cli_overrides(args)
    record = overrides.pop("llm.record", None) is not None  # written on the worker, not here
    loaded = load_config(
        engine.paths,
        repo=repo.resolve() if repo.is_dir() else None,
        env=os.environ,
        cli=overrides,
        cli_labels=_CLI_LABELS,
    )
    run = await engine.submit_run(
        args.task,
        args.repo,
        loaded,
        allow_dirty=args.allow_dirty,
        auto_approve=args.yes,
        record=record or bool(loaded.config.llm.record),
    )
    print(f"run {run.id}", flush=True)
    print(
        f"queued: a worker (`orchestrator worker`) will carry it out; "
        f"follow it with `orchestrator show {run.id}`",
        file=sys.stderr,
    )
    if record:
        print(
            f"--record: the worker writes the cassette under its own home, at "
            f"cassettes/{run.id}.jsonl (the run's log names the file)",
            file=sys.stderr,
        )
    return 0


async def worker_command(engine: Engine, args: argparse.Namespace) -> int:
    from config.loader import load_config
    from core.worker import Worker

    loaded = load_config(engine.paths, env=os.environ)

    def say(text: str) -> None:
        print(f"worker {worker.name}: {text}", flush=True)

    worker = Worker(
        engine,
        args.worker_id or socket.gethostname().split(".")[0],
        max_parallel=args.max_parallel,
        poll_seconds=args.poll,
        lease_seconds=loaded.config.execution.lease_seconds,
        until_idle=args.until_idle,
        say=say,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    say(f"started as {worker.owner} (up to {worker.max_parallel} at once)")
    try:
        driven = await worker.serve()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await engine.journal.flush()
    say(f"stopped after driving {len(driven)} run(s)")
    return 0
