"""Where indexes live under the indexes folder, and removing those of vanished repositories.

chroma/                       the ChromaDB PersistentClient (one collection per index)
cache.sqlite                  chunk lists and vectors shared by every index
<repo>-<hash>/<embedder>/     catalog.sqlite, lexical/ (BM25), lock
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path


def index_folder(indexes: Path, root: Path, embedder_key: str) -> Path:
    """The folder of the index for a repository root and an embedder."""
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", root.name).strip("-")[:40] or "repo"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    return indexes / f"{slug}-{digest}" / embedder_key


def collection_name(root: Path, embedder_key: str) -> str:
    """A Chroma collection name (3-512 of [a-zA-Z0-9._-], alphanumeric at both ends)."""
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", root.name).strip("-_")[:40] or "repo"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    return f"{slug}-{digest}-{embedder_key}"[:200].strip("-_.") + "x"


def prune_indexes(indexes: Path) -> list[str]:
    """Delete the indexes of repository roots that no longer exist (e.g. removed run worktrees),
    with their vector collections; returns the roots pruned."""
    pruned: list[str] = []
    if not indexes.is_dir():
        return pruned
    for catalog_file in sorted(indexes.glob("*/*/catalog.sqlite")):
        folder = catalog_file.parent
        try:  # a plain read of two meta rows: no integrity check of every catalog
            with closing(sqlite3.connect(catalog_file, timeout=5)) as db:
                meta = dict(
                    db.execute("SELECT key, value FROM meta WHERE key IN ('root', 'embedder')")
                )
        except sqlite3.DatabaseError:
            continue  # rebuilt when its repository is indexed next
        root, embedder_key = meta.get("root"), meta.get("embedder")
        if not root or Path(root).exists():
            continue
        from rag.vectors import delete_collection

        delete_collection(
            indexes / "chroma", collection_name(Path(root), embedder_key or folder.name)
        )
        shutil.rmtree(folder, ignore_errors=True)
        if not any(folder.parent.iterdir()):
            folder.parent.rmdir()
        pruned.append(root)
    return pruned
