"""The search daemon: one process per home that keeps search warm (Chroma, the embedder, the
indexes), so `orchestrator search` from the shell answers in a fraction of a second.

core.search_client starts it on demand (`python -m core.search_daemon --home HOME`). It listens
on `HOME/daemon/search.sock` (folder mode 0700), answers one JSON line per connection, in
order, with exactly what an in-process search would give (the same config loading,
`hybrid_retriever` and `search_repository`), and exits after `--idle` seconds without a
question, or when a client runs other code (its reply is then "stale"). One daemon per home: it
holds an exclusive lock on `HOME/daemon/search.lock` (which holds its pid) for its life. Before each question it
reopens what other processes changed (HybridRetriever.reopen_changed). It logs to
`HOME/logs/search-daemon.log`, rotated by size with the main log's settings (core.logfile);
its stdout and stderr go nowhere.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.logfile import SharedRotatingFileHandler
from core.search_client import code_version, daemon_folder, socket_address

if TYPE_CHECKING:
    from config.schema import LoggingConfig

log = logging.getLogger("orchestrator.search_daemon")

MAX_REQUEST_BYTES = 16 << 20
LOCK_WAIT_SECONDS = 5.0  # a daemon told to exit (stale) gives way to its successor in this time
LOG_NAME = "search-daemon.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Collect(logging.Handler):
    """The warnings one question raised, sent back for the client to print on stderr as an
    in-process search would."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One search question answered as `orchestrator search` in-process would answer it."""
    from config.loader import load_config
    from config.paths import Paths
    from core.errors import OrchestratorError
    from core.indexing import hybrid_retriever, search_repository

    collect = _Collect()
    logging.getLogger().addHandler(collect)
    try:
        config_dir = request.get("config_dir")
        paths = Paths(
            home=Path(request["home"]),
            explicit=bool(request["explicit"]),
            config_dir=Path(config_dir) if config_dir else None,
        )
        repo = Path(request["repo"])
        loaded = load_config(paths, repo=repo, env=dict(request["env"]))
        hybrid = hybrid_retriever(paths, loaded.config, loaded.catalog)
        hybrid.reopen_changed()
        hits = search_repository(
            hybrid,
            str(request["query"]),
            repo,
            k=int(request["k"]),
            path_glob=request.get("path_glob"),
            language=request.get("lang"),
        )
        reply: dict[str, Any] = {
            "ok": True,
            "hits": [h.as_json() for h in hits],
            "scores": [h.score for h in hits],
        }
    except OrchestratorError as exc:
        reply = {"ok": False, "error": {"class": type(exc).__name__, "message": str(exc)}}
    finally:
        logging.getLogger().removeHandler(collect)
    reply["warnings"] = collect.lines
    return reply


def _read_request(conn: socket.socket) -> dict[str, Any] | None:
    data = b""
    while not data.endswith(b"\n") and len(data) < MAX_REQUEST_BYTES:
        block = conn.recv(1 << 16)
        if not block:
            break
        data += block
    try:
        request = json.loads(data)
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def _reply(conn: socket.socket, reply: dict[str, Any]) -> None:
    try:
        conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        log.info("a client left before its answer")


def _take_lock(folder: Path) -> Any:
    """The home's daemon lock (an open file), or None when another daemon keeps it."""
    handle = (folder / "search.lock").open("a")
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")  # who serves this home, for a person or a test
            handle.flush()
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                return None
            time.sleep(0.05)  # waiting for a stale daemon to finish exiting; bounded above


def serve(home: Path, idle_seconds: float) -> int:
    """Answer questions until idle for idle_seconds (or told the code changed); 0 when done,
    also when another daemon already serves this home."""
    folder = daemon_folder(home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = _take_lock(folder)
    if lock is None:
        return 0
    version = code_version()
    path = folder / "search.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)  # a socket a killed daemon left; we hold the lock
        with socket_address(folder) as address:
            server.bind(address)
        server.listen(64)
        server.settimeout(idle_seconds)
        log.info("search daemon %d listening on %s", os.getpid(), path)
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                log.info("idle for %.0f s; exiting", idle_seconds)
                return 0
            with conn:
                conn.settimeout(None)
                request = _read_request(conn)
                if request is None:
                    _reply(conn, {"ok": False, "fallback": "unreadable request"})
                elif request.get("version") != version:
                    path.unlink(missing_ok=True)  # the next client starts a daemon of its code
                    _reply(conn, {"stale": True})
                    log.info("a client runs other code; exiting")
                    return 0
                else:
                    try:
                        started = time.perf_counter()
                        reply = answer(request)
                        log.debug("answered in %.0f ms", 1000 * (time.perf_counter() - started))
                        _reply(conn, reply)
                    except Exception as exc:  # the client then searches in-process
                        log.exception("search failed in the daemon")
                        _reply(conn, {"ok": False, "fallback": f"{type(exc).__name__}: {exc}"})
    finally:
        server.close()
        path.unlink(missing_ok=True)  # still ours: a successor binds only once it has the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _log_settings(home: Path, config_dir: Path | None) -> LoggingConfig:
    """The logging section (config.schema.LoggingConfig) of the home's configuration and the
    ORCHESTRATOR__LOGGING__* variables the spawner passed; the defaults when the configuration
    is invalid (each question then reports what is wrong with it)."""
    from config.loader import load_config
    from config.paths import Paths
    from config.schema import LoggingConfig
    from core.errors import OrchestratorError

    paths = Paths(home=home, explicit=config_dir is None, config_dir=config_dir)
    try:
        return load_config(paths, env=os.environ).config.logging
    except OrchestratorError:
        return LoggingConfig()


def _log_to_file(home: Path, config_dir: Path | None) -> None:
    """Send every logger's records (and Python's warnings) to HOME/logs/search-daemon.log,
    rotated by size as the main log is: the logging section's level, max_bytes, backup_count."""
    settings = _log_settings(home, config_dir)
    logs = home / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        handler = SharedRotatingFileHandler(
            logs / LOG_NAME, max_bytes=settings.max_bytes, backup_count=settings.backup_count
        )
    except OSError:
        return  # a home whose logs cannot be written: the daemon still serves, unlogged
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(settings.level)
    logging.captureWarnings(True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.search_daemon")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--idle", type=float, default=600.0, help="seconds without a question")
    parser.add_argument(
        "--config-dir", type=Path, default=None, help="the user config's folder, if not the home"
    )
    args = parser.parse_args(argv)
    _log_to_file(args.home, args.config_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # runs serve's finally: socket removed
    try:
        return serve(args.home, args.idle)
    except Exception:  # e.g. a folder where no unix socket can be made: clients search alone
        log.exception("the search daemon stopped")
        return 1


if __name__ == "__main__":
    sys.exit(main())
