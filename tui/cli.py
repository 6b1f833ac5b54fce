"""The `orchestrator` command: argument parsing and dispatch to the commands in tui/commands.py."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from core.agents.presets import PRESETS
from core.errors import OrchestratorError
from core.records import RunStatus


class _VersionAction(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("agent-orchestrator")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        print(f"orchestrator {number}")
        parser.exit()


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options that pick models and agents for a run (`run`, `submit`, `acp`)."""
    p.add_argument(
        "--provider",
        help="LLM provider for every model: ollama, openai, anthropic or replay "
        "(default auto: each model's models.yaml provider)",
    )
    p.add_argument(
        "--model", help="models.yaml entry or raw Ollama tag for the planner and the executor"
    )
    p.add_argument("--host", help="Ollama host, e.g. http://127.0.0.1:11434")
    p.add_argument(
        "--base-url",
        help="OpenAI-compatible API URL, e.g. http://127.0.0.1:8000/v1 (sets llm.openai.base_url)",
    )
    p.add_argument(
        "--record",
        metavar="FILE",
        help="write every model request and answer to a JSONL cassette",
    )
    p.add_argument(
        "--replay",
        metavar="FILE",
        help="answer model requests from a cassette (with --provider replay)",
    )
    p.add_argument(
        "--replay-strict",
        action="store_true",
        help="only answer requests the cassette holds exactly",
    )
    p.add_argument(
        "--agent",
        choices=sorted(PRESETS),
        help="carry the phases out with this coding agent over ACP (see `orchestrator agents`)",
    )
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="start from HEAD even when the repository has uncommitted changes",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Plan a software task into phases, run agents in git worktrees, verify, and keep every step. "
        "Without a command it opens the terminal UI on the run list.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument(
        "--home",
        help="folder for all state (database, logs, worktrees, config.yaml); "
        "default $ORCHESTRATOR_HOME or the XDG data folder",
    )
    parser.add_argument("--as", dest="as_name", metavar="NAME", help=_AS_HELP)
    parser.add_argument(
        "--db",
        metavar="URL",
        help="store state in this PostgreSQL database (postgresql://USER@HOST:PORT/DB) instead "
        "of the home's SQLite file; default $ORCHESTRATOR__STATE__URL or state.url",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--headless",
            action="store_true",
            help="print progress instead of opening the terminal UI "
            "(also the case when the output is not a terminal)",
        )
        p.add_argument(
            "--yes",
            action="store_true",
            help="approve risk and threshold interventions as they come",
        )
        p.add_argument(
            "--verbose",
            "-v",
            action="store_true",
            help="also print the live log (model output, commands)",
        )

    def add_task_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("task", help="what the run should do, in plain words")
        p.add_argument(
            "--repo",
            required=True,
            help="the git repository to work on: a path, or a git URL (file://, ssh, https) that is "
            "cloned into the home and to which the run branch is pushed after each phase",
        )
        add_model_options(p)

    p = sub.add_parser("run", help="plan and execute a task on a repository")
    add_task_options(p)
    add_run_options(p)

    from tui.worker_command import add_parsers as add_worker_parsers

    add_worker_parsers(sub, add_task_options)

    p = sub.add_parser("resume", help="continue an interrupted or failed run where it stopped")
    p.add_argument("run_id")
    add_run_options(p)

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument(
        "--status", choices=[s.value for s in RunStatus], help="only runs with this status"
    )
    p.add_argument(
        "--recoverable",
        action="store_true",
        help="only runs that were interrupted or whose process died",
    )
    p.add_argument("--limit", type=int, default=100, help="at most N runs (0: every run)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", help="a run with its phases, attempts, findings and interventions")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "cancel", help="stop a run (the process running it stops within a heartbeat)"
    )
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("interventions", help="list manual interventions")
    p.add_argument("--run", dest="run_id")
    p.add_argument("--pending", action="store_true")
    p.add_argument("--json", action="store_true")

    for name, text in (
        ("approve", "approve a pending intervention"),
        ("reject", "reject a pending intervention"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("intervention_id")
        p.add_argument("--note", help="a note stored with the decision")
        p.add_argument("--json", action="store_true", help="print the answered intervention")
        if name == "approve":
            p.add_argument(
                "--budget-usd",
                type=float,
                metavar="N",
                help="for a budget intervention: the new cost limit in USD, then continue",
            )
            p.add_argument(
                "--budget-tokens",
                type=int,
                metavar="N",
                help="for a budget intervention: the new token limit, then continue",
            )

    p = sub.add_parser(
        "export", help="a run's summary as markdown (default) or JSON, or its findings as SARIF"
    )
    p.add_argument("run_id")
    p.add_argument(
        "--format",
        choices=["markdown", "json", "sarif"],
        help="default markdown (json with --json)",
    )
    p.add_argument("--json", action="store_true", help="the JSON document, as --format json")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        help="also copy the run's artifacts (summary, diffs, reports, log) into DIR,"
        " from the folder or bucket they were stored in",
    )

    p = sub.add_parser("apply", help="merge a completed run's branch into your current branch")
    p.add_argument("run_id")
    p.add_argument(
        "--repo",
        metavar="PATH",
        help="your checkout to apply to (default: the run's repository path; for a run on a git "
        "URL, the current directory); the run branch is fetched from its origin when missing",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "clean", help="remove worktrees and branches of finished runs (history stays)"
    )
    p.add_argument("run_id", nargs="?")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("config", help="show or validate the merged configuration")
    p.add_argument("action", choices=["show", "validate"])
    p.add_argument(
        "--repo", help="also read the repository's orchestrator.yaml and orchestrator.local.yaml"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "models",
        help="configured models: provider, reachable and present, context length, price",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--provider",
        help="check every chat model against this provider, as `run --provider` routes them "
        "(default llm.provider; auto: each model's models.yaml provider)",
    )
    p.add_argument(
        "--base-url",
        help="the server to ask: the Ollama host with --provider ollama, else the "
        "OpenAI-compatible API URL (llm.openai.base_url), or Anthropic's with --provider anthropic",
    )

    p = sub.add_parser(
        "verify",
        help="run the repository's build, test, lint and security checks on a tree as it is",
    )
    p.add_argument("path", help="the tree to check (its own .venv/bin comes first on PATH)")
    p.add_argument(
        "--only",
        help="comma-separated categories to run: build,test,lint,security,custom",
    )
    p.add_argument(
        "--json", action="store_true", help='print {"findings": [...], "summary": {...}}'
    )
    p.add_argument("--sarif", metavar="FILE", help="also write the findings as SARIF 2.1.0")
    p.add_argument(
        "--verbose", "-v", action="store_true", help="stream the tools' output to stderr"
    )

    p = sub.add_parser(
        "demo", help="run the offline demo on a copy of the shipped sample repository"
    )
    add_run_options(p)

    from tui.rag_commands import add_parsers as add_rag_parsers

    add_rag_parsers(sub)
    from tui.agent_commands import add_parsers as add_agent_parsers

    add_agent_parsers(sub)
    from tui.doctor_command import add_parser as add_doctor_parser

    add_doctor_parser(sub)
    from tui.serve_command import add_parser as add_serve_parser

    add_serve_parser(sub)
    from tui.stats_command import add_parser as add_stats_parser

    add_stats_parser(sub)
    from tui.lessons_command import add_parser as add_lessons_parser

    add_lessons_parser(sub)
    from tui.acp_command import add_parser as add_acp_parser

    add_acp_parser(sub)
    from tui.db_command import add_parser as add_db_parser

    add_db_parser(sub)
    # `--as NAME` is accepted after any command too; SUPPRESS keeps a global one given before it.
    for command_parser in sub.choices.values():
        command_parser.add_argument(
            "--as", dest="as_name", metavar="NAME", default=argparse.SUPPRESS, help=_AS_HELP
        )
    return parser


_AS_HELP = (
    "record answers and run-changing commands as NAME (default: your OS user and git's user.name)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrator` script; returns the exit code (0 ok, 1 failure, 2 bad input)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "app"  # no command: the terminal UI on the run list
    from tui import commands

    try:
        code = asyncio.run(commands.dispatch(args))
        sys.stdout.flush()  # a closed reader shows here, not as a warning at exit
        return code
    except OrchestratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_went_away()


def _reader_went_away() -> int:
    """stdout's reader closed early (`orchestrator show RUN | head -1`): stop quietly, as a command
    killed by SIGPIPE would; output still buffered goes to /dev/null so exit raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
