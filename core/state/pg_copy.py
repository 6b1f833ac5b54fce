"""`orchestrator db copy --to URL`: a home's SQLite history moved into a PostgreSQL database.

Every table the two databases share, every column they share, rows in their SQLite order
(`rowid` carried over, so reads keep it) via COPY in one transaction holding the store's write
lock; the identity counters continue after the copied rows. A target that already holds runs is
refused before anything is written, so a copy never mixes two histories or runs twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from config.dburl import mask_url
from core.errors import InputError, StateError
from core.state.dialect import WRITE_LOCK_SQL
from core.state.pg import PgBackend, PgConnection

# Parents before children (foreign keys); tables other migrations add follow in file order.
_ORDER = [
    "runs",
    "phases",
    "executions",
    "findings",
    "artifacts",
    "manual_interventions",
    "events",
    "llm_usage",
    "llm_cache",
    "contexts",
]
_SKIP = {"schema_migrations"}
_BATCH = 5000


@dataclass
class CopyReport:
    """What was copied: rows per table, from where to where."""

    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)


def _source_tables(conn: sqlite3.Connection) -> list[str]:
    """The SQLite file's tables in copy order."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY rowid"
        )
        if r[0] not in _SKIP
    ]
    return [t for t in _ORDER if t in names] + [t for t in names if t not in _ORDER]


def _read_table(source: Path, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """Every row of a table (rowid first), in rowid order."""
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as conn:
        names = ", ".join(columns)
        return list(conn.execute(f"SELECT rowid, {names} FROM {table} ORDER BY rowid"))


def _source_layout(source: Path) -> dict[str, list[str]]:
    """Each table of the SQLite file and its columns."""
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as conn:
        return {
            table: [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            for table in _source_tables(conn)
        }


async def copy_home(source: Path, url: str, password_file: str | None) -> CopyReport:
    """Copy the SQLite database at `source` into the PostgreSQL database at `url`."""
    from core.state.db import StateDatabase

    if not source.is_file():
        raise InputError(
            f"there is no state database at {source} to copy; point --home at the home "
            "that holds your runs"
        )
    # Migrate the source first (an older home), so both sides have this program's schema.
    await (await StateDatabase.open(source)).close()
    layout = await asyncio.to_thread(_source_layout, source)
    backend = await PgBackend.open(url, password_file)
    report = CopyReport(source=str(source), target=backend.where)
    try:
        async with backend._pool.connection() as conn, conn.transaction():
            await conn.execute(WRITE_LOCK_SQL)
            db = PgConnection(conn, backend._errors)
            have = await db.execute_fetchall("SELECT COUNT(*) FROM runs")
            if have[0][0]:
                raise InputError(
                    f"the database {backend.where} already holds {have[0][0]} run(s); nothing "
                    "was copied. Copy into an empty database (e.g. `createdb NAME`), or keep "
                    "using this one"
                )
            for table, columns in layout.items():
                report.rows[table] = await _copy_table(db, conn, source, table, columns)
    except psycopg.Error as exc:
        raise StateError(
            f"copying {source} into {mask_url(url)} failed: {backend._errors.convert(exc)}; "
            "nothing was copied (the copy is one transaction)"
        ) from None
    finally:
        await backend.close()
    return report


async def _copy_table(
    db: PgConnection,
    conn: psycopg.AsyncConnection[Any],
    source: Path,
    table: str,
    columns: list[str],
) -> int:
    """COPY one table's rows into the target; returns how many."""
    target = await db.execute_fetchall(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        (table,),
    )
    present = {r[0] for r in target}
    if not present:
        return 0  # a table only the source has (a newer branch): nothing to put it in
    shared = [c for c in columns if c in present and c != "rowid"]
    rows = await asyncio.to_thread(_read_table, source, table, shared)
    with_rowid = "rowid" in present
    names = (["rowid"] if with_rowid else []) + shared
    quoted = ", ".join(f'"{n}"' for n in names)
    async with conn.cursor().copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:  # type: ignore[arg-type]
        for row in rows:
            await copy.write_row(row if with_rowid else row[1:])
    for column in ("rowid", "seq"):
        if column in names and rows:
            await db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" (SELECT MAX({column}) FROM {table}))"
            )
    return len(rows)
