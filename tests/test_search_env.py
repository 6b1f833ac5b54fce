"""No secret of the shell crosses to the search daemon: a question carries only the variables the
configuration is loaded with, and a daemon the client starts has no key or token either."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

from core.search_client import daemon_folder, socket_address
from tests.clirun import cli
from tests.conftest import make_repo
from tests.waiting import wait_until

SECRETS = {
    "OPENAI_API_KEY": "canary-openai-5d1e9a",
    "MY_SERVICE_TOKEN": "canary-token-0b7c44",
    "ORCHESTRATOR_GIT_PASSWORD": "canary-git-pass-83f2",
    "ORCHESTRATOR__STATE__URL": "postgresql://orch:canary-db-pass-19ab@db.example/orch",
}
SETTINGS = {"ORCHESTRATOR__RAG__MAX_FILE_BYTES": "123456", "OLLAMA_HOST": "http://127.0.0.1:9"}
ON = {"ORCHESTRATOR_SEARCH_DAEMON": "on", "ORCHESTRATOR_SEARCH_DAEMON_IDLE": "60"}


def _serve_one(listener: socket.socket, received: list[bytes]) -> None:
    """A stand-in daemon: takes one question, keeps its bytes, answers "no hits"."""
    conn, _ = listener.accept()
    with conn:
        data = b""
        while not data.endswith(b"\n"):
            block = conn.recv(1 << 16)
            if not block:
                break
            data += block
        received.append(data)
        conn.sendall(json.dumps({"ok": True, "hits": [], "scores": [], "warnings": []}).encode())
        conn.sendall(b"\n")


def test_a_question_carries_the_settings_and_no_secret(tmp_path: Path) -> None:
    home, repo = tmp_path / "home", make_repo(tmp_path / "repo")
    folder = daemon_folder(home)
    folder.mkdir(mode=0o700, parents=True)
    received: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        with socket_address(folder) as address:
            listener.bind(address)
        listener.listen(1)
        server = threading.Thread(target=_serve_one, args=(listener, received), daemon=True)
        server.start()
        found = cli(home, "search", "hello", "--repo", str(repo), **ON, **SECRETS, **SETTINGS)
        server.join(timeout=60)
    assert found.returncode == 0 and "no results" in found.stdout, found.stdout + found.stderr
    (raw,) = received
    for value in SECRETS.values():
        assert value.encode() not in raw
    env = json.loads(raw)["env"]
    assert {name: env.get(name) for name in SETTINGS} == SETTINGS
    assert env["ORCHESTRATOR_HOME"] == str(home)


def test_a_daemon_the_client_starts_holds_no_secret(tmp_path: Path) -> None:
    home, repo = tmp_path / "home", make_repo(tmp_path / "repo")
    found = cli(home, "search", "hello", "--repo", str(repo), **ON, **SECRETS)
    assert found.returncode == 0, found.stdout + found.stderr
    pid = int((daemon_folder(home) / "search.lock").read_text())
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"core.search_daemon" in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        os.kill(pid, signal.SIGTERM)  # the daemon this test started
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), what=f"the search daemon {pid} to exit")
    for value in SECRETS.values():
        assert value.encode() not in environ
    assert b"PYTHONPATH=" in environ
