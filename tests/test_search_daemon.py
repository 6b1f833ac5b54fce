"""`orchestrator search` through the home's search daemon: the same answers as an in-process
search (also after other processes change the index), one daemon per home under concurrency,
exit when idle or when the code changed, and a client that loads none of the heavy packages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import ROOT, cli, cli_env
from tests.conftest import make_repo
from tests.test_rag_retrieve import FILES
from tests.waiting import wait_until

ON = {"ORCHESTRATOR_SEARCH_DAEMON": "on", "ORCHESTRATOR_SEARCH_DAEMON_IDLE": "120"}
OFF = {"ORCHESTRATOR_SEARCH_DAEMON": "off"}
QUERIES = [
    ["write the inventory to a CSV file"],
    ["write the inventory to a CSV file", "--json", "-k", "3"],
    ["csv", "--path-glob", "docs/*", "--lang", "markdown"],
    ["stock report", "--lang", "python", "-k", "2"],
    ["nothing matches zzzqqq"],
]


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


def same_as_in_process(home: Path, repo: Path, args: list[str]) -> None:
    via = search(home, *args, "--repo", str(repo), **ON)
    alone = search(home, *args, "--repo", str(repo), **OFF)
    assert (via.returncode, via.stdout, via.stderr) == (
        alone.returncode,
        alone.stdout,
        alone.stderr,
    ), args


def test_daemon_answers_as_an_in_process_search(
    tmp_path: Path, home: Path, stop_daemons: None
) -> None:
    repo = make_repo(tmp_path / "inv", FILES)
    cli(home, "index", str(repo), check=True)
    for args in QUERIES:
        same_as_in_process(home, repo, args)
    pid = daemon_pid(home)
    assert pid is not None, "no daemon serves the home after searches with the daemon on"
    assert (home / "daemon").stat().st_mode & 0o777 == 0o700

    typo = search(home, "x", "--repo", str(repo), "--lang", "pyhton", **ON)
    assert typo.returncode == 2 and "did you mean 'python'?" in typo.stderr
    assert daemon_pid(home) == pid, "the same daemon answered every question"


def test_daemon_sees_what_other_processes_changed(
    tmp_path: Path, home: Path, stop_daemons: None
) -> None:
    repo = make_repo(tmp_path / "inv", FILES)
    cli(home, "index", str(repo), "--lexical", check=True)
    query = ["write the inventory to a CSV file", "--json"]
    first = search(home, *query, "--repo", str(repo), **ON)
    assert all(hit["lexical_only"] for hit in json.loads(first.stdout))

    cli(home, "index", str(repo), check=True)  # another process adds every vector
    after = search(home, *query, "--repo", str(repo), **ON)
    assert not any(hit["lexical_only"] for hit in json.loads(after.stdout))
    same_as_in_process(home, repo, query)

    (repo / "inventory" / "ledger.py").write_text("def ledger_balance(entries):\n    return 0\n")
    cli(home, "index", str(repo), "--full", check=True)  # the catalog file is replaced
    same_as_in_process(home, repo, ["ledger balance", "--json"])
    assert "inventory/ledger.py" in search(home, "ledger balance", "--repo", str(repo), **ON).stdout


def test_concurrent_searches_start_one_daemon(
    tmp_path: Path, home: Path, stop_daemons: None
) -> None:
    repo = make_repo(tmp_path / "inv", FILES)
    cli(home, "index", str(repo), check=True)
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
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert len({out for out, _ in outs}) == 1 and outs[0][0].startswith(" 1. ")
    assert search(home, "csv file", "--repo", str(repo), **OFF).stdout == outs[0][0]
    wait_until(lambda: len(daemons_of(home)) == 1, what="a single daemon for the home")


def test_daemon_exits_when_idle_and_when_the_code_changed(
    tmp_path: Path, home: Path, stop_daemons: None
) -> None:
    repo = make_repo(tmp_path / "inv", FILES)
    cli(home, "index", str(repo), check=True)
    search(home, "csv", "--repo", str(repo), **{**ON, "ORCHESTRATOR_SEARCH_DAEMON_IDLE": "1"})
    wait_until(lambda: not daemons_of(home), what="the idle daemon to exit")
    assert not (home / "daemon" / "search.sock").exists()

    search(home, "csv", "--repo", str(repo), **ON)
    old = daemon_pid(home)
    assert old is not None
    # A client of other code is answered by a new daemon; the old one exits.
    sock = home / "daemon" / "search.sock"
    reply = _ask_raw(sock, {"version": "other code"})
    assert reply == {"stale": True}
    wait_until(lambda: not _alive(old), what="the daemon of other code to exit")
    same_as_in_process(home, repo, ["csv"])
    assert daemon_pid(home) not in (None, old)


def _ask_raw(sock_path: Path, request: dict[str, object]) -> object:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(sock_path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(sock.makefile().readline())


_PROBE = """
import json, sys
from tui.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""
HEAVY = ("chromadb", "onnxruntime", "numpy", "bm25s", "tokenizers", "pydantic", "yaml", "textual")


def test_a_search_the_daemon_answers_loads_no_heavy_package(
    tmp_path: Path, home: Path, stop_daemons: None
) -> None:
    repo = make_repo(tmp_path / "inv", FILES)
    cli(home, "index", str(repo), check=True)
    search(home, "csv", "--repo", str(repo), **ON)  # the daemon is up
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY,), "search", "csv", "--repo", str(repo)],
        cwd=ROOT,
        env=cli_env(home, **ON),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, proc.stderr
    assert proc.stdout == search(home, "csv", "--repo", str(repo), **OFF).stdout
