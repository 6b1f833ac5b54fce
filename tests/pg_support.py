"""A real PostgreSQL 15 for the tests: one server per test session from Debian's `postgresql`
package (initdb + pg_ctl in a temporary folder), and a fresh database per test made from a
migrated template (`CREATE DATABASE ... TEMPLATE`), so each test starts empty and quick."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("ORCHESTRATOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "orchestrator"
PASSWORD = "s3cret-pw-for-tests"
_names = itertools.count()


def missing_reason() -> str | None:
    """Why no server can start here, or None when initdb and pg_ctl are installed."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return (
                f"PostgreSQL 15 is not installed ({PG_BIN / tool} is missing); "
                "`apt-get install postgresql` (as .ci/run does) to run the PostgreSQL backend's tests"
            )
    return None


def _free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running server: TCP on 127.0.0.1:port with password auth for the user `orchestrator`."""

    folder: Path
    port: int
    run_as: list[str]

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        """A postgresql:// URL for a database on this server (with or without the password)."""
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement through psycopg (autocommit) and return the first column's values."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            rows = cur.fetchall() if cur.description else []
        return "\n".join(str(r[0]) for r in rows)

    def fresh_database(self, template: str | None = None) -> str:
        """Create an empty database (a copy of `template` when given); returns its name."""
        name = f"t{os.getpid()}_{next(_names)}"
        source = f" TEMPLATE {template}" if template else ""
        self.sql(f"CREATE DATABASE {name}{source}")
        return name

    def restart(self) -> None:
        """Restart the server (every connection to it is dropped)."""
        subprocess.run(
            [*self.run_as, str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast",
             "-l", str(self.folder / "log"), "-w", "-t", "60", "restart"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=True,
        )  # fmt: skip

    def drop_database(self, name: str) -> None:
        """Drop a test's database (closing what still connects to it)."""
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server fast and remove its folder."""
        subprocess.run(
            [
                *self.run_as,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> PgServer:
    """initdb and start a server in a new temporary folder (as `postgres`/`nobody` when root,
    since initdb refuses to run as root); raises RuntimeError with the server's log on failure."""
    folder = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = "postgres"
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            user, entry = "nobody", pwd.getpwnam("nobody")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        run_as = ["runuser", "-u", user, "--"]
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, os.stat(folder).st_uid, os.stat(folder).st_gid)
    data, port = folder / "data", _free_port()
    init = subprocess.run(
        [*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
         "--locale=C"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed in {folder}: {init.stderr or init.stdout}")
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    start = subprocess.run(
        [*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"),
         "-o", options, "-w", "-t", "60", "start"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if start.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed in {folder}: {start.stderr}\n{log}")
    return PgServer(folder, port, run_as)


def server_for_session() -> Iterator[PgServer]:
    """The body of the session fixture: start, yield, stop."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def migrated_template(server: PgServer) -> str:
    """A database the store has migrated (and closed), to copy for each test."""
    import asyncio

    from core.state.store import StateStore

    name = server.fresh_database()

    async def migrate() -> None:
        await (await StateStore.open(server.folder / "unused.db", url=server.url(name))).close()

    asyncio.run(migrate())
    return name
