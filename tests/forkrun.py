"""`python -m tests.forkrun FOLDER COMMANDS.json`: start many `orchestrator` commands at once as
separate processes without paying the CLI's imports in each (about 1.2 s of CPU, most of it
Chroma's): the CLI and what a run imports are loaded once, then one child is forked per command
(each its own process from there on: its own database connections, Chroma client and event loop)
and runs `tui.cli.main` with its arguments. Child n writes FOLDER/n.out and FOLDER/n.err; once all
have exited, FOLDER/codes.json holds their exit codes in order. Start it in a new session so a
deadline can kill the whole group."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import bm25s
import chromadb
import chromadb_rust_bindings
import structlog
import tree_sitter

import core.baseline
import core.engine
import core.objstore
import core.setup
import rag.retrieve
import rag.syntax
import tui.commands
from tui.cli import main as cli_main

# What an `orchestrator run` imports, loaded before forking so the children start warm.
WARM = (bm25s, chromadb, chromadb_rust_bindings, structlog, tree_sitter, core.baseline, core.engine)
WARM += (core.objstore, core.setup, rag.retrieve, rag.syntax, tui.commands)


def _child(folder: Path, n: int, argv: list[str]) -> int:
    """In the forked child: send stdout and stderr to its files, then run the command."""
    for fd, name in ((1, f"{n}.out"), (2, f"{n}.err")):
        target = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    return cli_main(argv)


def main() -> int:
    folder, commands = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    children = []
    for n, argv in enumerate(commands):
        pid = os.fork()
        if pid == 0:  # the child: it exits as the command would, running the exit handlers
            raise SystemExit(_child(folder, n, argv))
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    (folder / "codes.json").write_text(json.dumps(codes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
