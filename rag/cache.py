"""Content-addressed caches shared by every index in the home folder.

Chunks are cached by (path, file hash, processors) and vectors by (embedder, text hash), so a
run's worktree, a branch switch or a re-index after switching back reuse them without parsing or
embedding again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunks import Chunk

_MEMO_SIZE = 50_000
_memo: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # this process's recent vectors
_memo_lock = threading.Lock()


def _remember(embedder: str, items: list[tuple[str, np.ndarray]]) -> None:
    with _memo_lock:
        for text_hash, vector in items:
            _memo[(embedder, text_hash)] = vector
            _memo.move_to_end((embedder, text_hash))
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)


class SharedCache:
    """One SQLite file of chunk lists and vectors; a damaged file is replaced by an empty one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Worktrees share their repository's index, so parallel phases write through this one
        # connection from several threads: their transactions take turns.
        self._write_lock = threading.Lock()
        try:
            self.db = self._open()
        except sqlite3.DatabaseError:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS file_chunks (path TEXT, hash TEXT, signature TEXT, "
            "chunks TEXT NOT NULL, PRIMARY KEY (path, hash, signature))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (embedder TEXT, text_hash TEXT, vector BLOB "
            "NOT NULL, PRIMARY KEY (embedder, text_hash))"
        )
        return db

    def close(self) -> None:
        self.db.close()

    def get_chunks(self, path: str, file_hash: str, signature: str) -> list[Chunk] | None:
        row = self.db.execute(
            "SELECT chunks FROM file_chunks WHERE path=? AND hash=? AND signature=?",
            (path, file_hash, signature),
        ).fetchone()
        if row is None:
            return None
        return [Chunk(*item) for item in json.loads(row[0])]

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One write transaction, one thread at a time; a failed one is rolled back."""
        with self._write_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(sql, rows)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def put_chunks(self, entries: list[tuple[str, str, str, list[Chunk]]]) -> None:
        """Store chunk lists: (path, file hash, signature, chunks)."""
        self._write(
            "INSERT OR REPLACE INTO file_chunks VALUES (?,?,?,?)",
            [
                (
                    path,
                    file_hash,
                    signature,
                    json.dumps(
                        [
                            [
                                c.path,
                                c.language,
                                c.symbol,
                                c.kind,
                                c.start_line,
                                c.end_line,
                                c.text,
                                c.content_hash,
                            ]
                            for c in chunks
                        ]
                    ),
                )
                for path, file_hash, signature, chunks in entries
            ],
        )

    def get_vectors(self, embedder: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """Known vectors by text hash: from this process's memory, then from the file."""
        out: dict[str, np.ndarray] = {}
        with _memo_lock:
            for text_hash in hashes:
                found = _memo.get((embedder, text_hash))
                if found is not None:
                    out[text_hash] = found
        rest = [h for h in hashes if h not in out]
        for begin in range(0, len(rest), 500):
            part = rest[begin : begin + 500]
            marks = ",".join("?" * len(part))
            for text_hash, blob in self.db.execute(
                f"SELECT text_hash, vector FROM vectors WHERE embedder=? AND text_hash IN ({marks})",
                [embedder, *part],
            ):
                out[text_hash] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_vectors(self, embedder: str, items: list[tuple[str, np.ndarray]]) -> None:
        _remember(embedder, items)
        self._write(
            "INSERT OR REPLACE INTO vectors VALUES (?,?,?)",
            [(embedder, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items],
        )
