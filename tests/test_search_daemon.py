"""`orchestrator index` and `orchestrator search`, through the home's search daemon: the same
answers as an in-process search (also after other processes change the index), one daemon per
home under concurrency, exit when idle or when the code changed, and a client (and a re-index
with no change) that loads none of the heavy packages. One home and index serve each test's many
questions."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.search_client import code_version, search_env
from tests.clirun import ROOT, cli, cli_env, probed
from tests.conftest import make_repo
from tests.test_rag_retrieve import FILES
from tests.waiting import wait_until

ON = {"ORCHESTRATOR_SEARCH_DAEMON": "on", "ORCHESTRATOR_SEARCH_DAEMON_IDLE": "120"}
OFF = {"ORCHESTRATOR_SEARCH_DAEMON": "off"}
TINY_LOG = {
    "ORCHESTRATOR__LOGGING__LEVEL": "DEBUG",
    "ORCHESTRATOR__LOGGING__MAX_BYTES": "600",
    "ORCHESTRATOR__LOGGING__BACKUP_COUNT": "2",
}


HEAVY = ("chromadb", "onnxruntime", "numpy", "bm25s", "tokenizers", "pydantic", "yaml", "textual")


def daemon_pid(home: Path) -> int | None:
    """The pid of the home's live daemon (from its lock file), or None."""
    try:
        pid = int((home / "daemon" / "search.lock").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def daemons_of(home: Path) -> list[int]:
    """Pids of every live search daemon process started for this home."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = b"core.search_daemon" in cmdline and str(home).encode() in cmdline
        if mine and _alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.fixture
def stop_daemons(home: Path) -> Iterator[None]:
    """Stops the daemons this test started (by pid), so none outlives it."""
    yield
    for pid in daemons_of(home):
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not daemons_of(home), what="the test's search daemons to exit")


def search(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(home, "search", *args, **env)


def in_process(home: Path, repo: Path, query: str, **filters: Any) -> list[dict[str, Any]]:
    """`search --json`'s answer computed here, as a fresh process would (new Chroma clients)."""
    from config.loader import load_config
    from config.paths import Paths
    from core.indexing import embedder_spec, index_settings, search_repository
    from rag.retrieve import HybridRetriever
    from rag.vectors import close_clients

    close_clients()
    paths = Paths(home)
    loaded = load_config(paths, repo=repo, env=cli_env(home))
    hybrid = HybridRetriever(
        paths.indexes,
        embedder_spec(loaded.config, loaded.catalog),
        index_settings(loaded.config),
    )
    try:
        hits = search_repository(
            hybrid,
            query,
            repo,
            k=filters.get("k", 10),
            path_glob=filters.get("path_glob"),
            language=filters.get("language"),
        )
    finally:
        hybrid.close()
        close_clients()
    return [h.as_json() for h in hits]


def via_daemon(home: Path, repo: Path, query: str, *args: str, **env: str) -> Any:
    found = search(home, query, "--repo", str(repo), "--json", *args, **{**ON, **env})
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)


def test_daemon_answers_as_an_in_process_search(
    tmp_path: Path, home: Path, stop_daemons: None
) -> None:
    repo = make_repo(tmp_path / "inv", FILES)
    stats = json.loads(cli(home, "index", str(repo), "--json", check=True).stdout)
    assert {"files", "chunks", "skipped", "seconds"} <= set(stats)
    assert stats["files"] == 5 and stats["chunks"] >= 5 and stats["pending"] == 0
    # A re-index with no change loads neither Chroma nor BM25.
    out, heavy = probed(home, ("chromadb", "bm25s"), "index", str(repo))
    assert heavy == [] and "0 added, 0 changed, 0 removed; 0 chunks embedded" in out
    # No daemon can start (its folder cannot be made): the search runs in-process.
    (home / "daemon").write_text("not a folder")
    query = "write the inventory to a CSV file"
    results = via_daemon(home, repo, query, "-k", "3")
    assert results == in_process(home, repo, query, k=3)
    assert not daemons_of(home)
    (home / "daemon").unlink()
    # What `search --json` answers: the defining chunk first, scores in order, vectors used.
    assert len(results) == 3
    top = results[0]
    assert {"path", "start_line", "end_line", "symbol", "score", "lexical_only"} <= set(top)
    assert (top["path"], top["symbol"], top["start_line"], top["end_line"]) == (
        "inventory/store.py",
        "InventoryStore",
        1,
        8,
    )
    assert top["lexical_only"] is False
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    # Concurrent first searches: every one answered, by a single daemon.
    command = [sys.executable, "-m", "tui.cli", "search", "csv file", "--repo", str(repo)]
    procs = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=cli_env(home, **ON),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, outs
    assert len({out for out, _ in outs}) == 1 and outs[0][0].startswith(" 1. ")
    assert search(home, "csv file", "--repo", str(repo), **OFF).stdout == outs[0][0]
    wait_until(lambda: len(daemons_of(home)) == 1, what="a single daemon for the home")
    pid = daemon_pid(home)
    assert pid is not None and (home / "daemon").stat().st_mode & 0o777 == 0o700

    assert via_daemon(home, repo, query) == in_process(home, repo, query)
    assert via_daemon(home, repo, query, "-k", "2") == in_process(home, repo, query, k=2)
    assert via_daemon(
        home, repo, "csv", "--path-glob", "docs/*", "--lang", "markdown"
    ) == in_process(home, repo, "csv", path_glob="docs/*", language="markdown")
    glob = search(
        home, "csv", "--repo", str(repo), "--path-glob", "docs/*", "--lang", "markdown", **ON
    )
    assert glob.stdout.startswith(" 1. docs/guide.md:1-2 Export  [section,"), glob.stdout
    odd = "zzzqqq nothing matches"
    assert via_daemon(home, repo, odd, "--lang", "go") == in_process(home, repo, odd, language="go")
    typo = search(home, "x", "--repo", str(repo), "--lang", "pyhton", **ON)
    assert typo.returncode == 2 and "did you mean 'python'?" in typo.stderr
    missing = search(home, "x", "--repo", str(repo.parent / "nope"), **ON)
    assert missing.returncode == 2 and "--repo" in missing.stderr
    assert "no such directory" in missing.stderr
    (plain := repo.parent / "plain").mkdir()
    refused = cli(home, "index", str(plain))
    assert refused.returncode == 2 and "not inside a git repository" in refused.stderr
    assert daemon_pid(home) == pid, "the same daemon answered every question"

    # The search process itself loads none of what the daemon keeps warm.
    assert probed(home, HEAVY, "search", "csv", "--repo", str(repo), **ON)[1] == []

    # A client of other code: the daemon exits and a new one (here told to idle 1 s) answers.
    assert _ask_raw(home / "daemon" / "search.sock", {"version": "other code"}) == {"stale": True}
    wait_until(lambda: not _alive(pid), what="the daemon of other code to exit")
    again = via_daemon(home, repo, "csv", ORCHESTRATOR_SEARCH_DAEMON_IDLE="1")
    assert again == in_process(home, repo, "csv")
    wait_until(lambda: not daemons_of(home), what="the idle daemon to exit")
    assert not (home / "daemon" / "search.sock").exists()


def test_daemon_sees_what_other_processes_changed(
    tmp_path: Path, home: Path, stop_daemons: None
) -> None:
    repo = make_repo(tmp_path / "inv", FILES)
    cli(home, "index", str(repo), "--lexical", check=True)
    query = "write the inventory to a CSV file"
    # The daemon this starts logs every question (DEBUG) to a log rotated past 600 bytes.
    assert all(hit["lexical_only"] for hit in via_daemon(home, repo, query, **TINY_LOG))

    cli(home, "index", str(repo), check=True)  # another process adds every vector
    after = via_daemon(home, repo, query)
    assert not any(hit["lexical_only"] for hit in after)
    assert after == in_process(home, repo, query)

    (repo / "inventory" / "ledger.py").write_text("def ledger_balance(entries):\n    return 0\n")
    cli(home, "index", str(repo), check=True)  # another process embeds the new file
    found = via_daemon(home, repo, "ledger balance")
    assert found[0]["path"] == "inventory/ledger.py" and found[0]["vector_rank"] is not None
    assert found == in_process(home, repo, "ledger balance")

    (repo / "inventory" / "ledger.py").write_text("def ledger_total(entries):\n    return 1\n")
    cli(home, "index", str(repo), "--full", check=True)  # the catalog file is replaced
    assert via_daemon(home, repo, "ledger total") == in_process(home, repo, "ledger total")

    # The daemon's log rotates as the main log does: the settings' size and backups kept.
    question = {
        "home": str(home),
        "explicit": True,
        "config_dir": None,
        "repo": str(repo),
        "query": "ledger",
        "k": 1,
        "env": search_env(cli_env(home)),
        "version": code_version(),
    }
    for _ in range(12):
        assert _ask_raw(home / "daemon" / "search.sock", question)["ok"] is True  # type: ignore[index]
    logs = home / "logs"
    files = sorted(p.name for p in logs.glob("search-daemon.log*") if not p.name.endswith(".lock"))
    assert files == ["search-daemon.log", "search-daemon.log.1", "search-daemon.log.2"]
    for name in files:
        text = (logs / name).read_text()
        assert 0 < len(text.encode()) <= 600 and text.endswith("\n"), name
    assert "answered in" in (logs / "search-daemon.log").read_text()


def _ask_raw(sock_path: Path, request: dict[str, object]) -> object:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(sock_path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(sock.makefile().readline())
