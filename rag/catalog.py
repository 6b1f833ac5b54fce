"""The per-index catalog (SQLite): files with their content hashes, and every chunk with its
metadata, lexical tokens and whether its vector is in the vector store yet."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.chunks import Chunk
from rag.errors import IndexCorruptError

SCHEMA_VERSION = "1"

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS files (
        path TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, status TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS chunks (
        id TEXT PRIMARY KEY, path TEXT NOT NULL, language TEXT NOT NULL, symbol TEXT,
        kind TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
        content_hash TEXT NOT NULL, text TEXT NOT NULL, tokens TEXT NOT NULL,
        embed_hash TEXT NOT NULL, embedded INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path)",
    "CREATE INDEX IF NOT EXISTS chunks_pending ON chunks(embedded)",
]


@dataclass(frozen=True)
class FileRow:
    path: str
    hash: str
    size: int
    mtime_ns: int
    status: str


@dataclass(frozen=True)
class StoredChunk:
    """A chunk row as search reads it."""

    id: str
    path: str
    language: str
    symbol: str | None
    kind: str
    start_line: int
    end_line: int
    text: str
    embedded: bool


class Catalog:
    """One index's SQLite catalog; opening checks integrity and raises IndexCorruptError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            check = self.db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise IndexCorruptError(f"{path}: integrity check says {check}")
            for statement in _SCHEMA:
                self.db.execute(statement)
            version = self.get_meta("schema")
            if version is None:
                self.set_meta("schema", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise IndexCorruptError(f"{path}: schema {version}, expected {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def files(self) -> dict[str, FileRow]:
        return {
            r[0]: FileRow(*r)
            for r in self.db.execute("SELECT path, hash, size, mtime_ns, status FROM files")
        }

    def apply(
        self,
        upserts: list[tuple[FileRow, list[Chunk], list[str]]],
        touched: list[FileRow],
        removed: list[str],
    ) -> tuple[list[str], int]:
        """In one transaction: replace changed files' chunks, refresh stats, drop removed files.

        Each upsert carries the file's chunks and their lexical token strings. A chunk id already
        stored keeps its embedded flag. Returns (ids of chunks that went away, chunks added).
        """
        gone: list[str] = []
        added = 0
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for path in removed:
                gone.extend(r[0] for r in db.execute("SELECT id FROM chunks WHERE path=?", (path,)))
                db.execute("DELETE FROM chunks WHERE path=?", (path,))
                db.execute("DELETE FROM files WHERE path=?", (path,))
            for row, chunks, tokens in upserts:
                old = {
                    r[0]: r[1]
                    for r in db.execute("SELECT id, embedded FROM chunks WHERE path=?", (row.path,))
                }
                new_ids = {c.id for c in chunks}
                stale = [i for i in old if i not in new_ids]
                gone.extend(stale)
                db.executemany("DELETE FROM chunks WHERE id=?", [(i,) for i in stale])
                fresh = [(c, t) for c, t in zip(chunks, tokens, strict=True) if c.id not in old]
                added += len(fresh)
                db.executemany(
                    "INSERT OR REPLACE INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,0)",
                    [
                        (
                            c.id,
                            c.path,
                            c.language,
                            c.symbol,
                            c.kind,
                            c.start_line,
                            c.end_line,
                            c.content_hash,
                            c.text,
                            t,
                            embed_hash,
                        )
                        for c, t in fresh
                        for embed_hash in [_embed_hash(c)]
                    ],
                )
                db.execute(
                    "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)",
                    (row.path, row.hash, row.size, row.mtime_ns, row.status),
                )
            db.executemany(
                "UPDATE files SET size=?, mtime_ns=? WHERE path=?",
                [(r.size, r.mtime_ns, r.path) for r in touched],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return gone, added

    def pending(self, limit: int, first: list[str] | None = None) -> list[tuple[str, str, str]]:
        """Up to `limit` chunks without a stored vector: (id, embed_hash, text to embed); chunks
        of the paths in `first` (e.g. the files a task's search found) come before the rest."""
        rows: list[tuple[str, str, str, str | None, str]] = []
        first = list(first or [])[:2000]  # a copy: another thread may be adding to it
        for begin in range(0, len(first), 500):
            part = first[begin : begin + 500]
            marks = ",".join("?" * len(part))
            rows += self.db.execute(
                "SELECT id, embed_hash, path, symbol, text FROM chunks WHERE embedded=0"
                f" AND path IN ({marks}) ORDER BY rowid LIMIT ?",
                (*part, limit - len(rows)),
            ).fetchall()
            if len(rows) >= limit:
                break
        if len(rows) < limit:
            rows += self.db.execute(
                "SELECT id, embed_hash, path, symbol, text FROM chunks WHERE embedded=0"
                " ORDER BY rowid LIMIT ?",
                (limit,),
            ).fetchall()
            rows = list({r[0]: r for r in rows}.values())[:limit]
        return [(r[0], r[1], _embed_text(r[2], r[3], r[4])) for r in rows]

    def mark_embedded(self, ids: Iterable[str]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("UPDATE chunks SET embedded=1 WHERE id=?", [(i,) for i in ids])
        self.db.execute("COMMIT")

    def reset_embedded(self) -> None:
        self.db.execute("UPDATE chunks SET embedded=0")

    def counts(self) -> tuple[int, int, int]:
        """(indexed files, chunks, chunks still without a vector)."""
        files = self.db.execute("SELECT count(*) FROM files WHERE status='indexed'").fetchone()[0]
        chunks, pending = self.db.execute(
            "SELECT count(*), coalesce(sum(embedded=0), 0) FROM chunks"
        ).fetchone()
        return int(files), int(chunks), int(pending)

    def lexical_rows(self) -> Iterator[tuple[str, str, str, str]]:
        """(id, path, language, tokens) of every chunk in a stable order."""
        yield from self.db.execute("SELECT id, path, language, tokens FROM chunks ORDER BY rowid")

    def embedded_signature(self) -> tuple[int, float]:
        """Which chunks have vectors, as their count and rowid sum: it changes whenever any
        process embeds, deletes or resets this index's vectors (a rewritten row gets a new
        rowid)."""
        row = self.db.execute(
            "SELECT count(*), total(rowid) FROM chunks WHERE embedded=1"
        ).fetchone()
        return int(row[0]), float(row[1])

    def embedded_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM chunks WHERE embedded=1")}

    def chunks_by_id(self, ids: list[str]) -> dict[str, StoredChunk]:
        out: dict[str, StoredChunk] = {}
        for begin in range(0, len(ids), 500):
            part = ids[begin : begin + 500]
            marks = ",".join("?" * len(part))
            for r in self.db.execute(
                "SELECT id, path, language, symbol, kind, start_line, end_line, text, embedded "
                f"FROM chunks WHERE id IN ({marks})",
                part,
            ):
                out[r[0]] = StoredChunk(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]))
        return out


def _embed_text(path: str, symbol: str | None, text: str) -> str:
    head = path + (f" {symbol}" if symbol else "")
    return f"{head}\n{text}"


def _embed_hash(chunk: Chunk) -> str:
    from rag.chunks import text_hash

    return text_hash(chunk.embed_text())
