"""The `orchestrator search` side of the search daemon (core.search_daemon): finds or starts the
home's daemon and asks it, so a shell search does not load Chroma and the embedder each time.

This module imports only the standard library (and core.procenv, itself standard library only):
it runs in the short-lived CLI process. Any failure to reach a daemon returns None and the
caller searches in-process, as it always could. No secret crosses to the daemon: it is started
without them, and a question carries only the variables loading the configuration reads.
`ORCHESTRATOR_SEARCH_DAEMON=off` turns the daemon off; `ORCHESTRATOR_SEARCH_DAEMON_IDLE` sets
how many seconds a daemon this starts waits for the next question before it exits. The daemon
it starts gets the logging section's variables (ORCHESTRATOR__LOGGING__*) and the user config's
folder, for its own rotated log file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.procenv import holds_secret_value, safe_env

DAEMON_ENV = "ORCHESTRATOR_SEARCH_DAEMON"
IDLE_ENV = "ORCHESTRATOR_SEARCH_DAEMON_IDLE"
IDLE_SECONDS = 600.0
SOCKET_NAME = "search.sock"
START_SECONDS = 60.0  # how long a client waits for a daemon it started to listen
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_CODE_FOLDERS = ("core", "rag", "config")
_LOGGING_ENV = "ORCHESTRATOR__LOGGING__"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; longer paths go through /proc/self/fd


def daemon_folder(home: Path) -> Path:
    """Where a home's search daemon keeps its socket and lock."""
    return home / "daemon"


def enabled(env: dict[str, str] | os._Environ[str]) -> bool:
    """False when ORCHESTRATOR_SEARCH_DAEMON says off (searches then run in-process)."""
    return env.get(DAEMON_ENV, "").strip().lower() not in ("0", "off", "no", "false")


def search_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables a question sends for the daemon to load the configuration with: our own
    settings (ORCHESTRATOR_*) and OLLAMA_HOST, never a variable that names a secret, nor the
    store's section (its URL may hold a database password; a search never opens the store)."""
    return {
        name: value
        for name, value in env.items()
        if (name.upper().startswith("ORCHESTRATOR") or name.upper() == "OLLAMA_HOST")
        and not name.upper().startswith("ORCHESTRATOR__STATE__")
        and not holds_secret_value(name)
    }


def code_version() -> str:
    """A stamp of the code and interpreter a daemon runs: a daemon started from other code
    (an upgrade, an edit) is told to exit and a fresh one answers."""
    digest = hashlib.sha256(sys.executable.encode())
    for folder in _CODE_FOLDERS:
        with os.scandir(_PACKAGE_ROOT / folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.endswith((".py", ".yaml")):
                    st = entry.stat()
                    digest.update(f"{folder}/{entry.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def socket_address(folder: Path) -> Iterator[str]:
    """The socket's address: its path, or for a path too long for a unix socket the same file
    reached through an open descriptor of its folder."""
    path = str(folder / SOCKET_NAME)
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        yield path
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


def _connect(folder: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with socket_address(folder) as address:
            sock.connect(address)
    except OSError:
        sock.close()
        return None
    return sock


def log_settings_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that set the logging section (ORCHESTRATOR__LOGGING__*): a daemon reads its
    log file's level, size limit and backups from them and the home's configuration."""
    return {name: value for name, value in env.items() if name.upper().startswith(_LOGGING_ENV)}


def _spawn(home: Path, config_dir: str | None) -> subprocess.Popen[bytes] | None:
    """Start a daemon for the home, detached (its own session, no terminal, our code first on
    its path); None when it cannot be started (e.g. a read-only home)."""
    env = safe_env()  # questions bring the settings; keys and tokens stay with the client
    env.update(log_settings_env(os.environ))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    idle = os.environ.get(IDLE_ENV) or str(IDLE_SECONDS)
    command = [sys.executable, "-m", "core.search_daemon", "--home", str(home), "--idle", idle]
    if config_dir:
        command += ["--config-dir", config_dir]
    try:
        daemon_folder(home).mkdir(mode=0o700, parents=True, exist_ok=True)
        return subprocess.Popen(
            command,
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None


def _wait_for(folder: Path, child: subprocess.Popen[bytes]) -> socket.socket | None:
    """A connection to the home's daemon once one listens (ours, or one that won the race:
    ours then exits once it sees that daemon's lock), or None when ours exited and none
    listens, or none does within START_SECONDS."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        exited = child.poll() is not None
        sock = _connect(folder)
        if sock is not None or exited:
            return sock
        time.sleep(0.02)  # polling a socket that is about to appear; bounded by the deadline
    return None


def _exchange(sock: socket.socket, request: dict[str, Any]) -> dict[str, Any] | None:
    """Send one request line and read one reply line; None when the daemon went away."""
    with sock:
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while not data.endswith(b"\n"):
                block = sock.recv(1 << 16)
                if not block:
                    break
                data += block
        except OSError:
            return None
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def ask(home: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The daemon's reply to a request ({"ok": true, ...} or {"ok": false, "error": ...}),
    starting the daemon when none listens; None when no daemon could answer. The request's
    "env" is this process's search_env()."""
    if not enabled(os.environ):
        return None
    folder = daemon_folder(home)
    request = {**request, "env": search_env(os.environ), "version": code_version()}
    config_dir = None if request.get("explicit") else request.get("config_dir")
    child: subprocess.Popen[bytes] | None = None
    for _ in range(3):  # a stale daemon or one that exited mid-answer: start another
        sock = _connect(folder)
        if sock is None:
            if child is None or child.poll() is not None:
                child = _spawn(home, config_dir)
            if child is None:
                return None
            sock = _wait_for(folder, child)
            if sock is None:
                return None
        reply = _exchange(sock, request)
        if reply is None or reply.get("stale"):
            continue
        return None if reply.get("fallback") else reply
    return None
