"""The `index` and `search` commands: they read the configuration and call core.indexing;
`search` asks the home's search daemon first (core.search_client) and searches in-process only
when no daemon answers."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Self

from config.paths import Paths
from core.errors import InputError


def add_parsers(sub: Any) -> None:
    """The index and search subcommands."""
    p = sub.add_parser("index", help="build or update a repository's retrieval index")
    p.add_argument("path", help="the git repository to index")
    p.add_argument("--full", action="store_true", help="rebuild from scratch")
    p.add_argument(
        "--lexical",
        action="store_true",
        help="update the lexical index only; vectors are filled in by a later index or run",
    )
    p.add_argument("--json", action="store_true", help="print the index's figures as JSON")
    p = sub.add_parser("search", help="search a repository's index (updated first)")
    p.add_argument("query")
    p.add_argument("--repo", required=True, help="the indexed git repository")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--path-glob", metavar="GLOB", help="only paths matching GLOB, e.g. 'src/**'")
    p.add_argument("--lang", help="only chunks of this language, e.g. python")
    p.add_argument("--json", action="store_true")


def _repo(raw: str, flag: str) -> Path:
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise InputError(f"{flag} {raw}: no such directory")
    return path


class _Bar:
    """A rich progress bar on stderr while a terminal is attached (nothing otherwise)."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> Self:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, stage: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


async def index_command(args: argparse.Namespace, paths: Paths) -> int:
    from core.indexing import hybrid_retriever, index_repository  # numpy, tree-sitter: on use

    repo = _repo(args.path, "PATH")
    from config.loader import load_config

    loaded = load_config(paths, repo=repo, env=os.environ)
    hybrid = hybrid_retriever(paths, loaded.config, loaded.catalog)
    stop = threading.Event()  # Ctrl-C ends the embedding after its current batch
    with _Bar(sys.stderr.isatty() and not args.json) as bar:
        try:
            stats = await asyncio.to_thread(
                index_repository,
                hybrid,
                repo,
                full=args.full,
                embed=not args.lexical,
                progress=bar.update,
                stop=stop,
            )
        except asyncio.CancelledError:
            stop.set()
            raise
    for notice in (stats.rebuilt or "").split("; "):
        if notice:
            print(f"warning: {notice}", file=sys.stderr)
    if args.json:
        print(json.dumps(stats.as_dict(), indent=2))
        return 0
    skipped = ", ".join(f"{n} {k}" for k, n in stats.skipped_by_reason.items() if n)
    print(
        f"indexed {stats.root}: {stats.files} files, {stats.chunks} chunks "
        f"(skipped {stats.skipped}{': ' + skipped if skipped else ''}) in {stats.seconds:.1f} s"
    )
    print(
        f"  {stats.added_files} added, {stats.changed_files} changed, {stats.removed_files} removed; "
        f"{stats.embedded} chunks embedded, {stats.reused_vectors} vectors reused "
        f"(embedder {stats.embedder})"
    )
    if stats.pending:
        print(
            f"  {stats.pending} chunks still have no vector (searched lexically until then); "
            "run `orchestrator index` again to finish"
        )
    return 0


async def search_command(args: argparse.Namespace, paths: Paths) -> int:
    """Search through the daemon (warm: no Chroma or model to load here), else in-process."""
    repo = _repo(args.repo, "--repo")
    if args.k < 1:
        raise InputError(f"-k {args.k}: give a number of results of at least 1")
    reply = await asyncio.to_thread(_ask_daemon, args, paths, repo)
    if reply is not None:
        for line in reply.get("warnings", []):
            print(line, file=sys.stderr)
        if not reply["ok"]:
            raise _daemon_error(reply["error"])
        return _print_hits(args, reply["hits"], reply["scores"])
    from config.loader import load_config
    from core.indexing import hybrid_retriever, search_repository  # numpy, tree-sitter: on use

    loaded = load_config(paths, repo=repo, env=os.environ)
    hybrid = hybrid_retriever(paths, loaded.config, loaded.catalog)
    hits = await asyncio.to_thread(
        search_repository,
        hybrid,
        args.query,
        repo,
        k=args.k,
        path_glob=args.path_glob,
        language=args.lang,
    )
    return _print_hits(args, [h.as_json() for h in hits], [h.score for h in hits])


def _ask_daemon(args: argparse.Namespace, paths: Paths, repo: Path) -> dict[str, Any] | None:
    """The home's search daemon's answer (core.search_daemon), or None to search in-process."""
    from core.search_client import ask

    request = {
        "home": str(paths.home),
        "explicit": paths.explicit,
        "config_dir": str(paths.config_dir) if paths.config_dir else None,
        "repo": str(repo),
        "query": args.query,
        "k": args.k,
        "path_glob": args.path_glob,
        "lang": args.lang,
    }
    return ask(paths.home, request)


def _daemon_error(error: dict[str, str]) -> Exception:
    """The daemon's error as the same class with the same text (exit code included)."""
    from core import errors

    cls = getattr(errors, error.get("class", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.OrchestratorError)):
        cls = errors.ForeignError
    exc = cls.__new__(cls)
    Exception.__init__(exc, error.get("message", ""))
    return exc


def _print_hits(args: argparse.Namespace, hits: list[dict[str, Any]], scores: list[float]) -> int:
    """`search`'s output: the hits' JSON, or one line each (score unrounded before formatting)."""
    if args.json:
        print(json.dumps(hits, indent=2))
        return 0
    if not hits:
        print("no results")
        return 0
    for n, (hit, score) in enumerate(zip(hits, scores, strict=True), 1):
        where = f"{hit['path']}:{hit['start_line']}-{hit['end_line']}"
        label = f" {hit['symbol']}" if hit["symbol"] else ""
        note = "  (lexical only: no vector yet)" if hit["lexical_only"] else ""
        print(f"{n:>2}. {where}{label}  [{hit['kind']}, {score:.4f}]{note}")
    return 0
