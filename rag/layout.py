"""Where indexes live under the indexes folder, and removing those of vanished repositories.

chroma/                       the ChromaDB PersistentClient (one collection per index)
cache.sqlite                  chunk lists and vectors shared by every index
<repo>-<hash>/<embedder>/     catalog.sqlite, lexical/ (BM25), locks (one per repository: its
                              worktrees search it plus an in-memory overlay, rag.overlay)
locks/                        file locks of the vector store (store, one per collection)
minilm-fused-v*-*.onnx        MiniLM's fused graph (rag.minilm_graph), made once from the package
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from collections.abc import Callable
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


def _recorded(catalog_file: Path) -> dict[str, str] | None:
    """The root and embedder an index records (a plain read: no integrity check), or None."""
    try:
        with closing(sqlite3.connect(catalog_file, timeout=5)) as db:
            return dict(db.execute("SELECT key, value FROM meta WHERE key IN ('root', 'embedder')"))
    except sqlite3.DatabaseError:
        return None


def legacy_worktree_indexes(indexes: Path) -> list[Path]:
    """Index folders older versions made per run worktree (a root that is a linked worktree or
    is gone); worktrees now search their repository's index through an in-memory overlay."""
    found: list[Path] = []
    if not indexes.is_dir():
        return found
    for catalog_file in sorted(indexes.glob("*/*/catalog.sqlite")):
        meta = _recorded(catalog_file)
        root = (meta or {}).get("root")
        if root and (not Path(root).exists() or (Path(root) / ".git").is_file()):
            found.append(catalog_file.parent)
    return found


def remove_legacy_worktree_indexes(indexes: Path) -> list[str]:
    """Delete what `legacy_worktree_indexes` lists, with their vector collections; returns the
    worktree roots whose indexes went."""
    from rag.vectors import delete_collection

    removed: list[str] = []
    for folder in legacy_worktree_indexes(indexes):
        meta = _recorded(folder / "catalog.sqlite") or {}
        root = meta.get("root", "")
        delete_collection(
            indexes / "chroma", collection_name(Path(root), meta.get("embedder") or folder.name)
        )
        shutil.rmtree(folder, ignore_errors=True)
        if folder.parent.is_dir() and not any(folder.parent.iterdir()):
            folder.parent.rmdir()
        removed.append(root)
    return removed


def prune_indexes(indexes: Path, remove: Callable[[list[Path]], None] | None = None) -> list[str]:
    """Delete the indexes of repository roots that no longer exist (e.g. removed run worktrees),
    with their vector collections (one store client for all); returns the roots pruned. `remove`
    deletes the folders (default: one after another)."""
    pruned: list[str] = []
    if not indexes.is_dir():
        return pruned
    dead: list[tuple[Path, str]] = []  # (index folder, collection name)
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
        dead.append((folder, collection_name(Path(root), embedder_key or folder.name)))
        pruned.append(root)
    if dead and (indexes / "chroma").is_dir():  # no store yet: no collection to delete
        from rag.vectors import delete_collections

        delete_collections(indexes / "chroma", [name for _, name in dead])
    folders = [folder for folder, _ in dead]
    if remove is None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        remove(folders)
    for parent in {folder.parent for folder in folders}:
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return pruned
