"""The CLI commands: each reads or changes state only through the engine's commands and queries."""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.paths import Paths
from core.errors import AlreadyAnsweredError, ConfigError, InputError, WithdrawnError
from core.readonly import READ_COMMANDS, read_only_reason, refuse_write
from core.records import Intervention, Run, RunStatus, RunSummary

if TYPE_CHECKING:
    from config.schema import LoggingConfig
    from core.engine import Engine

# Modules are imported by the commands that use them, so `runs`, `show`, `interventions` and
# `export` start fast (tests/test_startup.py checks which modules they load).


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


async def dispatch(args: argparse.Namespace) -> int:
    paths = Paths.resolve(args.home, os.environ, getattr(args, "db", None))
    if args.command == "config":
        return config_command(args, paths)
    if args.command in HOME_WRITING_COMMANDS:  # they write indexes or reports into the home
        reason = read_only_reason(paths)
        if reason is not None:
            raise refuse_write(args.command, reason)
    if args.command == "verify":
        from tui.verify_command import verify_command

        return await verify_command(args, paths)
    if args.command == "serve":  # each browser tab's app opens the database itself
        from tui.serve_command import serve_command

        return await serve_command(args, paths)
    if args.command == "agents":  # no state database needed
        from tui.agent_commands import agents_command

        return await agents_command(args)
    if args.command in ("index", "search"):  # no state database needed
        from tui import rag_commands

        run = rag_commands.index_command if args.command == "index" else rag_commands.search_command
        return await run(args, paths)
    reason = read_only_reason(paths)
    if reason is not None and args.command not in READ_COMMANDS:
        raise refuse_write(args.command, reason)
    if args.command == "db":  # the home's SQLite file into PostgreSQL; no engine needed
        from tui.db_command import db_command

        return await db_command(args, paths)
    if args.command == "doctor":
        from tui.doctor_command import doctor_command

        return await doctor_command(args, paths, read_only=reason is not None)
    if args.command == "acp":  # serves an editor on stdio; opens its own engine
        from tui.acp_command import acp_command

        return await acp_command(args, paths)
    from core.engine import Engine

    read_only = reason is not None
    if args.command in LIGHT_COMMANDS:
        engine = await Engine.open(
            paths, logging=functools.partial(_user_logging, paths), read_only=read_only
        )
    else:
        from config.loader import load_config

        user = load_config(paths, env=os.environ)  # the user's logging settings; run config later
        engine = await Engine.open(paths, logging=user.config.logging, read_only=read_only)
    async with engine:
        engine.act_as(getattr(args, "as_name", None))
        handler = COMMANDS[args.command]
        return await handler(engine, args)


# Commands that need no state database but write into the home (indexes, verification reports),
# so a read-only home refuses them as it refuses the commands that write the store.
HOME_WRITING_COMMANDS = frozenset({"verify", "index", "search"})


# Commands that only read the store: they import neither the configuration's pydantic models nor
# anything a run needs, and read the logging settings only if they log (bench/startup.py).
LIGHT_COMMANDS = frozenset({"runs", "show", "interventions", "export", "stats"})


def _user_logging(paths: Paths) -> LoggingConfig:
    """The user's logging settings; the defaults when the configuration does not load (a listing
    still works, and `config validate` says what is wrong)."""
    from config.loader import load_config
    from config.schema import LoggingConfig

    try:
        return load_config(paths, env=os.environ).config.logging
    except ConfigError:
        return LoggingConfig()


def config_command(args: argparse.Namespace, paths: Paths) -> int:
    from config.loader import load_config, render_show, show_dict

    repo = Path(args.repo).resolve() if args.repo else None
    if repo is not None and not repo.is_dir():
        raise InputError(f"--repo {args.repo}: no such directory")
    if args.action == "validate":
        return validate_command(args, paths, repo)
    loaded = load_config(paths, repo=repo, env=os.environ)
    from tui.verify_command import detected_lines, detected_steps_json

    if args.json:
        _print_json({**show_dict(loaded), "verification_steps": detected_steps_json(loaded, repo)})
    else:
        print(render_show(loaded) + detected_lines(loaded, repo))
    return 0


def validate_command(args: argparse.Namespace, paths: Paths, repo: Path | None) -> int:
    """`config validate`: every layer's keys and values, then provider and model names."""
    from config.loader import load_config
    from core.llm.config_check import ensure_names

    try:
        loaded = load_config(paths, repo=repo, env=os.environ)
        checked = ensure_names(loaded)
    except ConfigError as exc:
        if not args.json:
            raise
        _print_json({"valid": False, "errors": str(exc).splitlines()})
        return exc.exit_code
    files = [str(f) for f in loaded.files]
    if args.json:
        _print_json({"valid": True, "files": files, "notes": checked.notes})
        return 0
    print(f"configuration is valid ({', '.join(files) or 'shipped defaults only'})")
    for note in checked.notes:
        print(f"note: {note}")
    return 0


# The flag that set each key, so a configuration error names what the user typed.
_CLI_LABELS = {
    "llm.provider": "--provider",
    "models.planner": "--model",
    "models.executor": "--model",
    "llm.host": "--host",
    "llm.openai.base_url": "--base-url",
    "llm.record": "--record",
    "llm.replay": "--replay",
    "llm.replay_strict": "--replay-strict",
}


def _cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.provider:
        overrides["llm.provider"] = args.provider
    if args.model:
        overrides["models.planner"] = args.model
        overrides["models.executor"] = args.model
    if args.host:
        overrides["llm.host"] = args.host
    if getattr(args, "base_url", None):
        overrides["llm.openai.base_url"] = args.base_url
    if args.record:
        overrides["llm.record"] = str(Path(args.record).resolve())
    if args.replay:
        path = Path(args.replay).resolve()
        if not path.is_file():
            raise InputError(f"--replay {args.replay}: no such cassette file")
        overrides["llm.replay"] = str(path)
    if args.replay_strict:
        overrides["llm.replay_strict"] = True
    if getattr(args, "agent", None):
        overrides["execution.agent.name"] = args.agent
        overrides["execution.executor"] = "acp"
    return overrides


async def _watch(engine: Engine, run: Run, args: argparse.Namespace, *, resume: bool) -> int:
    """Drive the run in this process while printing its events; SIGINT/SIGTERM interrupt it cleanly."""
    from core.console import print_events

    if not args.headless:
        from tui.launch import interactive, open_app

        if interactive():
            return await open_app(
                engine,
                run_id=run.id,
                start="resume" if resume else "execute",
                auto_approve=args.yes,
            )
        print("not a terminal: printing progress as with --headless", file=sys.stderr)
    sub = engine.subscribe(run_id=run.id)
    printer = asyncio.create_task(print_events(sub, sys.stdout, verbose=args.verbose))
    work = asyncio.create_task(
        engine.resume_run(run.id, auto_approve=args.yes)
        if resume
        else engine.execute_run(run.id, auto_approve=args.yes)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, work.cancel)
    try:
        final = await work
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await engine.journal.flush()
        sub.close()
        await printer
    from core.final_word import final_word

    word = final_word(final)
    if word.ok:
        print(f"{word.message}; {word.next_step}")
        return 0
    print(word.message, file=sys.stderr)
    if word.next_step:
        print(word.next_step, file=sys.stderr)
    return word.exit_code


async def run_command(engine: Engine, args: argparse.Namespace) -> int:
    from config.loader import load_config

    repo = await engine.checkout(args.repo)  # a git URL is cloned or fetched into the home
    loaded = load_config(
        engine.paths,
        repo=repo.resolve() if repo.is_dir() else None,
        env=os.environ,
        cli=_cli_overrides(args),
        cli_labels=_CLI_LABELS,
    )
    run = await engine.create_run(args.task, args.repo, loaded, allow_dirty=args.allow_dirty)
    print(f"run {run.id}", flush=True)
    return await _watch(engine, run, args, resume=False)


async def resume_command(engine: Engine, args: argparse.Namespace) -> int:
    run = await engine.get_run(args.run_id)
    print(f"run {run.id}", flush=True)
    return await _watch(engine, run, args, resume=True)


async def demo_command(engine: Engine, args: argparse.Namespace) -> int:
    from config.loader import load_config
    from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo

    repo = await asyncio.to_thread(prepare_demo_repo, engine.paths.demo)
    loaded = load_config(
        engine.paths,
        repo=repo,
        env=os.environ,
        cli={"llm.provider": "replay", "llm.replay": str(cassette_path())},
    )
    run = await engine.create_run(DEMO_TASK, repo, loaded)
    print(f"run {run.id}", flush=True)
    print(f"demo repository: {repo}", flush=True)
    code = await _watch(engine, run, args, resume=False)
    if code == 0:
        print(f"summary: orchestrator export {run.id}")
    return code


def summary_json(s: RunSummary) -> dict[str, Any]:
    from core.reports.document import holder_fields  # loaded by the commands that print runs

    r = s.run
    return {
        "id": r.id,
        "task": r.task,
        "repo": r.repo,
        "status": str(r.status),
        "created_at": r.created_at,
        "started_at": r.started_at,
        "completed_at": r.completed_at,
        "branch": r.branch,
        "error": r.error,
        "phases_total": s.phases_total,
        "phases_completed": s.phases_completed,
        "findings": {k: s.findings.get(k, 0) for k in ("major", "medium", "minor")},
        "tokens": s.tokens,
        "cost_usd": round(s.cost_usd, 10),
        **holder_fields(r),
    }


def holder_text(doc: dict[str, Any]) -> str | None:
    """Who drives a run, for `show`: the worker (or process) holding its lease, or that it waits
    in the queue; None for a run nobody holds and nobody is to take."""
    owner, worker = doc.get("lease_owner"), doc.get("worker")
    if owner:
        who = f"worker {worker} ({owner})" if worker else f"process {owner}"
        if doc.get("lease_overdue"):
            return (
                f"{who}, lease overdue since {doc.get('lease_expires_at')}, its process"
                f" {doc.get('owner_pid')} is alive (its heartbeat is late; the run goes on)"
            )
        return f"{who}, lease until {doc.get('lease_expires_at')}"
    if doc.get("queued") and doc.get("status") not in ("completed", "failed", "cancelled"):
        return "queued for a worker (none holds it yet)"
    if doc.get("last_worker"):
        return f"driven by worker {doc['last_worker']} (nobody holds it now)"
    return None


async def runs_command(engine: Engine, args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise InputError(f"--limit {args.limit}: give a count of runs, or 0 for every run")
    limit = None if args.limit == 0 else args.limit
    summaries = await engine.list_runs(args.status, recoverable=args.recoverable, limit=limit)
    if args.json:
        _print_json([summary_json(s) for s in summaries])
        return 0
    if not summaries:
        print(await _no_runs_text(engine, args))
        return 0
    print(
        f"{'ID':<12} {'STATUS':<12} {'PHASES':<7} {'FINDINGS maj/med/min':<21} {'CREATED':<20} TASK"
    )
    for s in summaries:
        f = s.findings
        counts = f"{f.get('major', 0)}/{f.get('medium', 0)}/{f.get('minor', 0)}"
        print(
            f"{s.run.id:<12} {s.run.status:<12} {s.phases_completed}/{s.phases_total:<5} {counts:<21} "
            f"{s.run.created_at[:19]:<20} {s.run.task[:60]}"
        )
    return 0


async def _no_runs_text(engine: Engine, args: argparse.Namespace) -> str:
    """What an empty listing means: no runs at all, or none that pass the filter given."""
    total = await engine.count_runs()
    if total == 0:
        return 'no runs yet; start one with: orchestrator run "TASK" --repo PATH  (or: orchestrator demo)'
    what = "recoverable" if args.recoverable else str(args.status)
    if args.recoverable and args.status:
        what = f"recoverable {args.status}"
    return f"no {what} runs ({total} run{'s' if total != 1 else ''} in all; `orchestrator runs` lists them)"


async def show_command(engine: Engine, args: argparse.Namespace) -> int:
    doc = await engine.run_document(args.run_id)
    if args.json:
        _print_json(doc)
        return 0
    print(f"run {doc['id']}  {doc['status']}" + (f"  ({doc['error']})" if doc.get("error") else ""))
    print(f"task:   {doc['task']}\nrepo:   {doc['repo']}\nbranch: {doc.get('branch')}")
    held = holder_text(doc)
    if held:
        print(f"driver: {held}")
    print("\nphases:")
    for p in doc["phases"]:
        deps = ",".join(p["dependencies"]) or "-"
        commit = (p["commit"] or "")[:10]
        print(
            f"  {p['plan_id']:<12} {p['status']:<12} risk={p['risk_level']:<8} attempts={p['attempts']} "
            f"deps={deps:<20} {commit}  {p['name']}"
        )
    if doc["findings"]:
        print("\nfindings:")
        for f in doc["findings"]:
            where = f" {f['location']}" if f.get("location") else ""
            print(
                f"  [{f['severity']}] {f['status']:<8} {f['category']}/{f['tool']}{where}: "
                f"{f['message'].splitlines()[0][:100]}"
            )
    if doc["interventions"]:
        print("\ninterventions:")
        for i in doc["interventions"]:
            by = f"  by {i['answered_by']}" if i.get("answered_by") else ""
            print(f"  {i['id']} {i['kind']:<14} {i['status']:<9} {i['reason'][:80]}{by}")
    if doc.get("actions"):
        print("\nwho did what:")
        for a in doc["actions"]:
            detail = f" ({a['detail']})" if a.get("detail") else ""
            print(f"  {a['created_at'][:19]}  {a['action']:<10} by {a['actor']}{detail}")
    usage = doc.get("usage") or {}
    if usage:
        print(
            "\ntokens: "
            + ", ".join(
                f"{role} {u['prompt_tokens']}+{u['completion_tokens']}" for role, u in usage.items()
            )
        )
    print_usage_totals(doc.get("usage_totals") or {})
    return 0


async def cancel_command(engine: Engine, args: argparse.Namespace) -> int:
    run = await engine.cancel_run(args.run_id)
    if args.json:
        _print_json({"id": run.id, "status": str(run.status)})
        return 0
    print(
        f"run {run.id} {'cancelled' if run.status is RunStatus.CANCELLED else 'cancel requested'}"
    )
    return 0


def intervention_json(i: Intervention) -> dict[str, Any]:
    return {
        "id": i.id,
        "run_id": i.run_id,
        "phase_id": i.phase_id,
        "kind": str(i.kind),
        "reason": i.reason,
        "action_required": i.action_required,
        "status": str(i.status),
        "note": i.note,
        "created_at": i.created_at,
        "resolved_at": i.resolved_at,
        "payload": i.payload,  # e.g. a budget's scope, metric and limit
        "answered_by": i.answered_by,
    }


async def interventions_command(engine: Engine, args: argparse.Namespace) -> int:
    items = await engine.interventions(args.run_id, pending_only=args.pending)
    if args.json:
        _print_json([intervention_json(i) for i in items])
        return 0
    if not items:
        print(await _no_interventions_text(engine, args))
    for i in items:
        by = f"  (by {i.answered_by})" if i.answered_by else ""
        print(f"{i.id}  run {i.run_id}  {i.kind:<14} {i.status:<9} {i.reason}{by}")
        if i.status == "pending":
            print(f"    {i.action_required}")
    return 0


async def _no_interventions_text(engine: Engine, args: argparse.Namespace) -> str:
    """What an empty listing means: none at all, or none that pass the filters given."""
    if not args.run_id and not args.pending:
        return "no interventions"
    total = len(await engine.interventions())
    what = "pending interventions" if args.pending else "interventions"
    scope = f" in run {args.run_id}" if args.run_id else ""
    return f"no {what}{scope} ({total} intervention{'s' if total != 1 else ''} in all)"


async def answer_command(engine: Engine, args: argparse.Namespace) -> int:
    approve = args.command == "approve"
    try:
        item = await engine.resolve_intervention(
            args.intervention_id,
            approve=approve,
            note=args.note,
            budget_usd=getattr(args, "budget_usd", None),
            budget_tokens=getattr(args, "budget_tokens", None),
        )
    except WithdrawnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AlreadyAnsweredError as exc:
        print(f"error: already answered: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(intervention_json(item))
        return 0
    by = f" by {item.answered_by}" if item.answered_by else ""
    print(f"intervention {item.id} {item.status}{by}" + (f" ({item.note})" if item.note else ""))
    return 0


async def export_command(engine: Engine, args: argparse.Namespace) -> int:
    fmt = args.format or ("json" if args.json else "markdown")
    if args.json and fmt != "json":
        raise InputError(f"--json and --format {fmt} disagree: give one of them")
    text = await engine.export(args.run_id, fmt)
    if args.output:
        out = Path(args.output)
        if not out.parent.is_dir():
            raise InputError(f"-o {args.output}: folder {out.parent} does not exist")
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    if args.artifacts:
        written = await engine.export_artifacts(args.run_id, Path(args.artifacts))
        # On stderr when the document went to stdout, so a pipe still gets only the document.
        note = sys.stdout if args.output else sys.stderr
        for artifact, target in written:
            print(f"wrote {target} ({artifact.type}, from {artifact.path})", file=note)
    return 0


async def apply_command(engine: Engine, args: argparse.Namespace) -> int:
    from core.git.remote_url import is_url

    checkout = Path(args.repo).expanduser().resolve() if args.repo else None
    if checkout is None and is_url((await engine.get_run(args.run_id)).repo):
        checkout = Path.cwd()  # a run on a URL is applied to the checkout you are in
    head = await engine.apply_run(args.run_id, checkout)
    if args.json:
        _print_json({"id": args.run_id, "head": head})
        return 0
    print(f"applied run {args.run_id}; your branch is now at {head[:10]}")
    return 0


async def clean_command(engine: Engine, args: argparse.Namespace) -> int:
    cleaned = await engine.clean(args.run_id)
    if args.json:
        _print_json({"cleaned": cleaned})
        return 0
    print(f"cleaned {len(cleaned)} run(s)" + (": " + ", ".join(cleaned) if cleaned else ""))
    return 0


def print_usage_totals(totals: dict[str, Any]) -> None:
    """The ledger per phase and for the run: calls, tokens and cost."""
    run = totals.get("run") or {}
    if not run.get("calls"):
        return
    print("\nusage (calls, prompt+completion tokens, cost):")
    rows = [("planning", totals["planning"])] if totals["planning"]["calls"] else []
    rows += [*totals["phases"].items(), ("run total", run)]
    for scope, t in rows:
        print(
            f"  {scope:<12} {t['calls']:>4} calls  {t['prompt_tokens']}+{t['completion_tokens']} "
            f"tokens  ${t['cost_usd']:.4f}"
        )


def _models_overrides(args: argparse.Namespace, configured_provider: str) -> dict[str, Any]:
    """`models --provider/--base-url` as config overrides; the URL goes to the provider asked."""
    overrides: dict[str, Any] = {}
    provider = getattr(args, "provider", None) or configured_provider
    if getattr(args, "provider", None):
        overrides["llm.provider"] = args.provider
    if getattr(args, "base_url", None):
        key = {"ollama": "llm.host", "anthropic": "llm.anthropic.base_url"}.get(
            provider, "llm.openai.base_url"
        )
        overrides[key] = args.base_url
    return overrides


async def models_command(engine: Engine, args: argparse.Namespace) -> int:
    from config.loader import load_config

    loaded = load_config(engine.paths, env=os.environ)
    overrides = _models_overrides(args, loaded.config.llm.provider)
    if overrides:
        loaded = load_config(engine.paths, env=os.environ, cli=overrides)
    rows = await engine.models(loaded)
    if args.json:
        _print_json([r.as_dict() for r in rows])
        return 0
    print(
        f"{'MODEL':<24} {'PROVIDER':<10} {'ROLES':<18} {'REACHABLE':<10} {'PRESENT':<8} "
        f"{'CONTEXT':<8} PRICE in/out per Mtok (USD)"
    )

    def flag(value: bool | None) -> str:
        return "-" if value is None else ("yes" if value else "no")

    for r in rows:
        price = f"{r.input_per_mtok:g}/{r.output_per_mtok:g}"
        print(
            f"{r.name:<24} {r.provider:<10} {','.join(r.roles) or '-':<18} "
            f"{flag(r.reachable):<10} {flag(r.present):<8} {r.context_length or '-'!s:<8} {price}"
        )
        if r.note:
            print(f"    {r.note}")
    return 0


async def stats_command(engine: Engine, args: argparse.Namespace) -> int:
    """`orchestrator stats`: the body lives in tui/stats_command.py."""
    from tui.stats_command import stats_command as run_stats

    return await run_stats(engine, args)


async def lessons_command(engine: Engine, args: argparse.Namespace) -> int:
    from tui.lessons_command import lessons_command as run

    return await run(engine, args)


async def app_command(engine: Engine, args: argparse.Namespace) -> int:
    """`orchestrator` with no command: the terminal UI on the run list."""
    from tui.launch import interactive, open_app

    if not interactive():
        build_help = "run `orchestrator --help` for the commands"
        raise InputError(f"the terminal UI needs a terminal (stdin and stdout); {build_help}")
    return await open_app(engine)


def _lazy(module: str, name: str) -> Callable[[Engine, argparse.Namespace], Awaitable[int]]:
    """A command whose module is imported only when it runs."""

    async def handler(engine: Engine, args: argparse.Namespace) -> int:
        command = getattr(importlib.import_module(module), name)
        return int(await command(engine, args))

    return handler


COMMANDS = {
    "app": app_command,
    "run": run_command,
    "resume": resume_command,
    "demo": demo_command,
    "runs": runs_command,
    "show": show_command,
    "cancel": cancel_command,
    "interventions": interventions_command,
    "approve": answer_command,
    "reject": answer_command,
    "export": export_command,
    "apply": apply_command,
    "clean": clean_command,
    "models": models_command,
    "stats": stats_command,
    "lessons": lessons_command,
    "submit": _lazy("tui.worker_command", "submit_command"),
    "worker": _lazy("tui.worker_command", "worker_command"),
}
