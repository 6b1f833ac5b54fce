"""The state database's health without the store: integrity, WAL and schema, and recovering what a
damaged file (truncated, garbage header) still holds into a new database.

Recovery works on a copy: a garbage header is rewritten with SQLite's standard one, a truncated
file is padded back to whole pages, then the `sqlite3` CLI's `.recover` reads what it can; when
that fails, the rows of each of our tables that can still be read are copied into a fresh
database made by the migrations. The damaged file is kept beside the new one.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import StateError
from core.state import schema
from core.state.db import WAL_SIZE_LIMIT_BYTES, _prepare, is_damaged
from core.state.wal_copy import copy_with_wal, has_wal_content
from core.timeutil import utcnow

_MAGIC = b"SQLite format 3\x00"
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


@dataclass
class DatabaseReport:
    """The state database's health, read without the store."""

    path: str
    exists: bool
    bytes: int = 0
    wal_bytes: int = 0
    integrity: list[str] = field(default_factory=list)
    applied_migrations: list[str] = field(default_factory=list)
    known_migrations: int = len(schema.MIGRATIONS)
    pending_migrations: list[str] = field(default_factory=list)
    unknown_migrations: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return self.exists and self.integrity != ["ok"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _open_mode_ro(db: Path) -> sqlite3.Connection:
    """`mode=ro` on `db`, proven by one read (it fails when the WAL index cannot be made)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _connect_ro(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection: `mode=ro`, or (when the WAL index cannot be made in a read-only
    folder) a private copy of the database and its WAL, or `immutable=1` when there is no WAL."""
    scratch: Path | None = None
    try:
        conn = _open_mode_ro(db)
    except sqlite3.OperationalError as exc:
        if is_damaged(exc):
            raise
        if has_wal_content(db):
            scratch, copy = copy_with_wal(db)
            conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True, timeout=10)
        else:
            conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def inspect_database(db: Path) -> DatabaseReport:
    """Integrity (`PRAGMA quick_check`), sizes and migrations of the database at `db`."""
    report = DatabaseReport(path=str(db), exists=db.is_file())
    if not report.exists:
        return report
    report.bytes, report.wal_bytes = _size(db), _size(Path(f"{db}-wal"))
    try:
        with _connect_ro(db) as conn:
            report.integrity = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
            if report.integrity == ["ok"]:
                applied = schema.applied_migrations(conn)
                if not applied:  # a database from before names: user_version counts them
                    legacy = int(conn.execute("PRAGMA user_version").fetchone()[0])
                    applied = [n for n, _ in schema.MIGRATIONS[:legacy]]
                known = [n for n, _ in schema.MIGRATIONS]
                report.applied_migrations = applied
                report.pending_migrations = [n for n in known if n not in applied]
                report.unknown_migrations = [n for n in applied if n not in known]
    except sqlite3.DatabaseError as exc:
        report.integrity = [str(exc)]
    return report


def wal_too_big(report: DatabaseReport) -> bool:
    """Whether the WAL holds far more than a run leaves between checkpoints."""
    return report.wal_bytes > 4 * WAL_SIZE_LIMIT_BYTES


def checkpoint_truncate(db: Path) -> None:
    """Move the WAL into the database and truncate it."""
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _page_size(data: bytes) -> int:
    """The page size a header names, or the first standard size the file is a multiple of."""
    if data[:16] == _MAGIC:
        raw = struct.unpack(">H", data[16:18])[0]
        size = 65536 if raw == 1 else raw
        if size in _PAGE_SIZES:
            return size
    return next((s for s in _PAGE_SIZES if len(data) % s == 0), 4096)


def _standard_header(page_size: int, pages: int) -> bytes:
    """SQLite's 100-byte header for a rollback-journal database of `pages` pages."""
    return b"".join(
        [
            _MAGIC,
            struct.pack(">H", 1 if page_size == 65536 else page_size),
            bytes([1, 1, 0, 64, 32, 32]),
            struct.pack(">IIIIIIIIIIII", 1, pages, 0, 0, 1, 4, 0, 0, 1, 0, 0, 0),
            bytes(20),
            struct.pack(">II", 1, sqlite3.sqlite_version_info[0] * 1_000_000),
        ]
    )


def _readable_copy(db: Path, copy: Path) -> None:
    """Copy the damaged file with a sane header and padded to whole pages (and to the page count
    its header claims), so SQLite can parse what is left."""
    data = bytearray(db.read_bytes())
    page = _page_size(bytes(data[:100]))
    claimed = struct.unpack(">I", data[28:32])[0] if data[:16] == _MAGIC else 0
    pages = max(-(-len(data) // page), claimed, 1)
    if data[:16] != _MAGIC or len(data) < 100:
        data[:100] = _standard_header(page, pages)
    else:
        data[28:32] = struct.pack(">I", pages)
        wal = Path(f"{db}-wal")
        if wal.is_file():  # what the WAL holds is read with the copy
            shutil.copyfile(wal, f"{copy}-wal")
    data.extend(bytes(pages * page - len(data)))
    copy.write_bytes(bytes(data))


def _cli_recover(source: Path, target: Path) -> bool:
    """`sqlite3 source .recover | sqlite3 target`; False when the CLI is missing or failed."""
    cli = shutil.which("sqlite3")
    if not cli:
        return False
    dump = subprocess.run(
        [cli, str(source), ".recover"], capture_output=True, text=True, check=False, timeout=600
    )
    if dump.returncode != 0 or "sql error" in dump.stderr.lower() or "runs" not in dump.stdout:
        return False
    try:
        with closing(sqlite3.connect(target, isolation_level=None)) as new:
            new.executescript(dump.stdout)
            ok = new.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            has_runs = new.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
            ).fetchone()
            return bool(ok and has_runs)
    except sqlite3.Error:
        return False


def _salvage(source: Path, target: Path) -> None:
    """Copy every row of our tables that can still be read into a fresh, migrated database."""
    _prepare(target)
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as old,
        closing(sqlite3.connect(target, isolation_level=None)) as new,
    ):
        new.execute("PRAGMA foreign_keys = OFF")
        new.execute("BEGIN")
        tables = [
            r[0]
            for r in new.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name != 'schema_migrations'"
            )
        ]
        for table in tables:
            columns = [r[1] for r in new.execute(f"PRAGMA table_info({table})")]
            try:
                have = [r[1] for r in old.execute(f"PRAGMA table_info({table})")]
            except sqlite3.Error:
                continue
            shared = [c for c in columns if c in have]
            if not shared:
                continue
            names = ", ".join(shared)
            marks = ", ".join("?" for _ in shared)
            cursor = old.execute(f"SELECT {names} FROM {table}")
            while True:
                try:
                    row = cursor.fetchone()
                except sqlite3.DatabaseError:
                    break  # the rest of this table sits on damaged pages
                if row is None:
                    break
                new.execute(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", row)
        new.execute("COMMIT")


def recover_database(db: Path) -> Path:
    """Recover what a damaged database holds into a new file that takes its place; the damaged
    file (and its WAL) is kept beside it as `<name>.damaged-<time>`, whose path is returned."""
    stamp = utcnow().replace(":", "").replace("-", "")[:15]
    work = db.with_name(f"{db.name}.readable-{stamp}")
    fresh = db.with_name(f"{db.name}.recovered-{stamp}")
    aside = db.with_name(f"{db.name}.damaged-{stamp}")
    try:
        _readable_copy(db, work)
        for leftover in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
            leftover.unlink(missing_ok=True)
        if not _cli_recover(work, fresh):
            fresh.unlink(missing_ok=True)
            try:
                _salvage(work, fresh)
            except sqlite3.Error as exc:
                raise StateError(
                    f"could not recover {db} ({exc}); it is unchanged. Move it away to start "
                    "with an empty database (your worktrees and branches are not in it)"
                ) from exc
        with closing(sqlite3.connect(fresh, isolation_level=None)) as new:
            new.execute("PRAGMA journal_mode = WAL")
            schema_conn_migrate(new)
            scrub_json(new)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)
    os.chmod(fresh, 0o600)
    for suffix in ("-wal", "-shm", ""):
        kept = Path(f"{db}{suffix}")
        if kept.exists():
            kept.rename(Path(f"{aside}{suffix}"))
    for suffix in ("-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    fresh.rename(db)
    return aside


def scrub_json(conn: sqlite3.Connection) -> int:
    """Reset JSON columns (those defaulting to '{}' or '[]') whose recovered text is not valid
    JSON (a lost overflow page reads as zeros) to their default; returns how many were reset."""
    reset = 0
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in tables:
        for _cid, column, _type, _notnull, default, _pk in conn.execute(
            f"PRAGMA table_info({table})"
        ).fetchall():
            if default not in ("'{}'", "'[]'"):
                continue
            cursor = conn.execute(
                f"UPDATE {table} SET {column} = {default}"
                f" WHERE {column} IS NOT NULL AND NOT json_valid({column})"
            )
            reset += cursor.rowcount
    return reset


def schema_conn_migrate(conn: sqlite3.Connection) -> None:
    """Bring a recovered database's schema up to date (tables .recover could not find included)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        schema.migrate(conn)
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
