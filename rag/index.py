"""One repository's index: keeping it up to date incrementally, and its parts for search
(where its files live: rag.layout).

`update` lists files, re-chunks only those whose content changed, deletes chunks of removed
files, rebuilds BM25 when anything changed (the lexical index is then ready), and `embed`
fills in vectors for chunks that lack one, from the vector cache first. Every step commits as it
goes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.cache import SharedCache
from rag.catalog import Catalog, FileRow
from rag.chunks import Chunk
from rag.embedders import Embedder, EmbedderSpec, make_embedder
from rag.errors import IndexCorruptError
from rag.files import FileSelector, content_reason, decode, repo_root
from rag.layout import collection_name, index_folder
from rag.lexical import LexicalIndex
from rag.overlay import changed_paths
from rag.processors import ProcessorRegistry
from rag.tokens import tokenize
from rag.vectors import VectorStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)
EMBED_BATCH = 256  # pending chunks per round (sorted by length to pad little); a stop waits one


def _identity(path: Path) -> tuple[int, int] | None:
    """A file's (device, inode), or None when it is missing."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass
class IndexStats:
    """Figures of one update: what `index --json` prints."""

    root: str
    embedder: str
    files: int = 0
    chunks: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    added_files: int = 0
    changed_files: int = 0
    removed_files: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    reused_vectors: int = 0
    pending: int = 0
    lexical_seconds: float = 0.0
    embed_seconds: float = 0.0
    seconds: float = 0.0
    resumed: bool = False
    rebuilt: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IndexSettings:
    """What to index and how: the rag config section's values."""

    exclude: list[str] = field(default_factory=list)
    max_file_bytes: int = 2_000_000


class RepoIndex:
    """The index of one repository root for one embedder (blocking; run it in a thread)."""

    def __init__(
        self,
        root: Path,
        indexes: Path,
        spec: EmbedderSpec,
        settings: IndexSettings | None = None,
        *,
        embedder: Embedder | None = None,
        registry: ProcessorRegistry | None = None,
    ) -> None:
        self.root = repo_root(Path(root))
        self.indexes = indexes
        self.spec = spec
        self.settings = settings or IndexSettings()
        self._embedder = embedder
        self.embedder_key = embedder.key if embedder is not None else spec.key
        self.registry = registry or ProcessorRegistry()
        self.folder = index_folder(indexes, self.root, self.embedder_key)
        self.notices: list[str] = []
        self._lexical: LexicalIndex | None = None
        self._chunk_memo: dict[tuple[str, str, str], list[Chunk]] = {}
        self._selector: FileSelector | None = None
        self._open()

    # -- opening, corruption, locking -------------------------------------------------------

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # One process at a time opens (and on first use creates) the shared cache and a
        # catalog: switching a new file to WAL while another process opens it fails with
        # "database is locked" without waiting, which is no damage and must never be taken for it.
        with _flocked(self.indexes / "open.lock"):
            self.cache = SharedCache(self.indexes / "cache.sqlite")
            try:
                self.catalog = Catalog(self.folder / "catalog.sqlite")
            except IndexCorruptError as exc:
                self._rebuild_notice(str(exc))
                self._wipe_catalog()
                self.catalog = Catalog(self.folder / "catalog.sqlite")
        self._vectors: VectorStore | None = None
        self._vectors_seen: tuple[int, float] = (0, 0.0)
        self._catalog_identity = _identity(self.folder / "catalog.sqlite")
        self.catalog.set_meta("root", str(self.root))
        self.catalog.set_meta("embedder", self.embedder_key)

    @property
    def vectors(self) -> VectorStore:
        """The index's vector collection, opened on first use: lexical work never loads Chroma."""
        if self._vectors is None:
            self._vectors_seen = self.catalog.embedded_signature()  # before: a write after shows
            name = collection_name(self.root, self.embedder_key)
            store = VectorStore(
                self.indexes / "chroma", name, self.spec.provider, self.spec.model, self.spec.host
            )
            if store.rebuilt:  # only this collection was broken: its vectors are made again
                self._rebuild_notice(store.rebuilt)
                self.catalog.reset_embedded()
            self._vectors = store
        return self._vectors

    def _rebuild_notice(self, reason: str) -> None:
        message = f"the index of {self.root} was unreadable ({reason}); rebuilding it from scratch"
        log.warning(message)
        self.notices.append(message)

    def _wipe_catalog(self) -> None:
        for name in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
            (self.folder / name).unlink(missing_ok=True)
        shutil.rmtree(self.folder / "lexical", ignore_errors=True)

    def _locked(self, what: str) -> AbstractContextManager[None]:
        """One updater of the files ("update") and one embedder ("embed") per index at a time,
        across processes; a lexical update never waits for a long embedding."""
        return _flocked(self.folder / f"{what}.lock")

    def close(self) -> None:
        self.catalog.close()
        self.cache.close()

    def replaced(self) -> bool:
        """True when the catalog file this index opened is gone or was replaced by another
        process (`index --full`, a rebuild, a pruned index): a long-lived reader reopens it."""
        return _identity(self.folder / "catalog.sqlite") != self._catalog_identity

    def vectors_stale(self) -> bool:
        """True when the opened vector collection may not show what another process embedded,
        deleted or rebuilt since (this index's embedded chunks changed since it was opened)."""
        return self._vectors is not None and (
            self.catalog.embedded_signature() != self._vectors_seen
        )

    def forget_vectors(self) -> None:
        """Drop the opened vector collection: the next use opens it again from the store."""
        self._vectors = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.spec, self.indexes)
        return self._embedder

    # -- updating ----------------------------------------------------------------------------

    def update(
        self,
        *,
        full: bool = False,
        embed: bool = True,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> IndexStats:
        """Bring the index up to date; with embed=False only the lexical part is made ready.

        Setting `stop` ends the embedding after the current batch (the rest stays pending).
        """
        started = time.perf_counter()
        stats = IndexStats(root=str(self.root), embedder=self.embedder_key)
        with self._locked("update"):
            if full:
                with self._locked("embed"):
                    self._full_reset()
            if embed or self._vectors is not None:  # a lexical update leaves Chroma unloaded
                self._check_consistency()
            stats.resumed = self.catalog.get_meta("state") == "updating"
            self.catalog.set_meta("state", "updating")
            self._update_files(stats, progress)
            stats.lexical_seconds = time.perf_counter() - started
        if embed:
            t0 = time.perf_counter()
            with self._locked("embed"):
                self._embed_pending(stats, progress, stop=stop)
                self._stamp_store()
                if not self.catalog.counts()[2]:
                    self.catalog.set_meta("state", "ready")
            stats.embed_seconds = time.perf_counter() - t0
        stats.files, stats.chunks, stats.pending = self.catalog.counts()
        stats.rebuilt = "; ".join(self.notices) or None
        stats.seconds = time.perf_counter() - started
        return stats

    def embed(
        self,
        progress: Progress | None = None,
        max_seconds: float | None = None,
        max_chunks: int | None = None,
        stop: threading.Event | None = None,
        first: list[str] | None = None,
    ) -> IndexStats:
        """Fill in vectors for chunks that lack one (after an update with embed=False), the
        chunks of the paths in `first` before the rest.

        With max_seconds it stops after the batch that crosses that time; the rest stays
        pending (lexical-only) for the next call.
        """
        started = time.perf_counter()
        stats = IndexStats(root=str(self.root), embedder=self.embedder_key)
        with self._locked("embed"):
            self._embed_pending(stats, progress, max_seconds, max_chunks, stop, first)
            self._stamp_store()
            if not self.catalog.counts()[2]:
                self.catalog.set_meta("state", "ready")
        stats.files, stats.chunks, stats.pending = self.catalog.counts()
        stats.embed_seconds = stats.seconds = time.perf_counter() - started
        return stats

    def _full_reset(self) -> None:
        """--full: forget every file, chunk and vector of this index (the caches stay)."""
        self.catalog.close()
        self._wipe_catalog()
        self.catalog = Catalog(self.folder / "catalog.sqlite")
        self._catalog_identity = _identity(self.folder / "catalog.sqlite")
        self.vectors.drop()
        self._lexical = None

    def _store_stamp(self, embedded: int) -> str | None:
        """The vector store's file identity with the number of vectors the catalog expects in
        it: while both stay the same, the store this index last found whole was not replaced."""
        identity = _identity(self.indexes / "chroma" / "chroma.sqlite3")
        return None if identity is None else f"{identity[0]}:{identity[1]}:{embedded}"

    def _stamp_store(self) -> None:
        """After this process checked or wrote the vectors: remember the store as whole."""
        if self._vectors is not None:
            _, chunks, pending = self.catalog.counts()
            stamp = self._store_stamp(chunks - pending)
            if stamp is not None and stamp != self.catalog.get_meta("vectors_stamp"):
                self.catalog.set_meta("vectors_stamp", stamp)

    def _check_consistency(self) -> None:
        """Vectors lost from the store (a damaged or deleted collection) are filled in again.

        A process that has not opened the store skips it, so Chroma is not even loaded, while
        the store file and the count of embedded chunks are those recorded when this index last
        checked or wrote its vectors: a re-index with no change takes a fraction of a second."""
        _, chunks, pending = self.catalog.counts()
        embedded = chunks - pending
        stamp = self._store_stamp(embedded)
        if self._vectors is None and stamp and stamp == self.catalog.get_meta("vectors_stamp"):
            return
        stored = self.vectors.count()
        if stored < embedded:
            self._rebuild_notice(
                f"the vector store holds {stored} vectors but the catalog expects {embedded}"
            )
            self.catalog.reset_embedded()

    def current_stats(self) -> IndexStats:
        """The index's figures as they stand, without updating it."""
        stats = IndexStats(root=str(self.root), embedder=self.embedder_key)
        stats.files, stats.chunks, stats.pending = self.catalog.counts()
        return stats

    def selector(self) -> FileSelector:
        """The index's file rules (kept: they remember each path's verdict for the next update)."""
        if self._selector is None:
            self._selector = FileSelector(self.settings.exclude, self.settings.max_file_bytes)
        return self._selector

    def chunk_file(self, path: str, file_hash: str, text: str) -> list[Chunk]:
        """A file's chunks, from the shared cache when this content was chunked before."""
        signature = self.registry.signature()
        key = (path, file_hash, signature)
        chunks = self._chunk_memo.get(key) or self.cache.get_chunks(path, file_hash, signature)
        if chunks is None:
            chunks = self.registry.for_path(path).process(path, text)
            self.cache.put_chunks([(path, file_hash, signature, chunks)])
        if len(self._chunk_memo) > 2000:  # worktrees of one run share most changed files
            self._chunk_memo.clear()
        self._chunk_memo[key] = chunks
        return chunks

    def snapshot(self) -> tuple[str | None, set[str]]:
        """The commit the index was built from and the paths that differed from it then
        (what a worktree's overlay compares against)."""
        dirty = self.catalog.get_meta("dirty")
        return self.catalog.get_meta("head"), set(json.loads(dirty)) if dirty else set()

    def _record_snapshot(self) -> None:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        head = proc.stdout.strip()
        if proc.returncode != 0 or not head:
            return  # no commit yet: worktrees cannot exist either
        self.catalog.set_meta("dirty", json.dumps(sorted(changed_paths(self.root, head))))
        self.catalog.set_meta("head", head)

    def _update_files(self, stats: IndexStats, progress: Progress | None) -> None:
        self._record_snapshot()
        selector = self.selector()
        candidates, skipped = selector.list(self.root)
        known = self.catalog.files()
        signature = self.registry.signature()
        if self.catalog.get_meta("processors") != signature:
            known = {p: FileRow(p, "", -1, -1, r.status) for p, r in known.items()}
        upserts: list[tuple[FileRow, list[Chunk], list[str]]] = []
        touched: list[FileRow] = []
        new_cache: list[tuple[str, str, str, list[Chunk]]] = []
        seen: set[str] = set()
        total = len(candidates)
        for done, cand in enumerate(candidates, 1):
            if progress and (done % 200 == 0 or done == total):
                progress("files", done, total)
            seen.add(cand.path)
            old = known.get(cand.path)
            if old and old.size == cand.size and old.mtime_ns == cand.mtime_ns:
                if old.status != "indexed":
                    skipped[old.status] = skipped.get(old.status, 0) + 1
                continue
            try:
                data = (self.root / cand.path).read_bytes()
            except OSError:
                continue
            digest = hashlib.sha256(data).hexdigest()
            reason = content_reason(data)
            text = decode(data) if reason is None else None
            if reason is None and text is None:
                reason = "binary"
            status = reason or "indexed"
            row = FileRow(cand.path, digest, cand.size, cand.mtime_ns, status)
            if old and old.hash == digest and old.status == status:
                touched.append(row)
                if reason:
                    skipped[reason] += 1
                continue
            if reason:
                skipped[reason] += 1
                upserts.append((row, [], []))
            else:
                assert text is not None
                chunks = self.cache.get_chunks(cand.path, digest, signature)
                if chunks is None:
                    chunks = self.registry.for_path(cand.path).process(cand.path, text)
                    new_cache.append((cand.path, digest, signature, chunks))
                upserts.append(
                    (
                        row,
                        chunks,
                        [
                            " ".join(tokenize(c.symbol or "") + tokenize(c.path) + tokenize(c.text))
                            for c in chunks
                        ],
                    )
                )
            if reason:
                pass  # counted in skipped_by_reason, not as an added or changed file
            elif old is None or old.status != "indexed":
                stats.added_files += 1
            else:
                stats.changed_files += 1
        removed = [p for p in known if p not in seen]
        stats.removed_files = len(removed)
        stats.skipped_by_reason = skipped
        stats.skipped = sum(skipped.values())
        if new_cache:
            self.cache.put_chunks(new_cache)
        gone, added = self.catalog.apply(upserts, touched, removed)
        stats.chunks_added, stats.chunks_removed = added, len(gone)
        if gone:
            self.vectors.delete(gone)
        self.catalog.set_meta("processors", signature)
        generation = self.catalog.get_meta("generation") or "0"
        current = (
            self._lexical is not None and getattr(self._lexical, "generation", None) == generation
        )
        if (
            upserts
            or removed
            or not (current or LexicalIndex.saved(self.folder / "lexical", generation))
        ):
            if upserts or removed:
                generation = str(int(generation) + 1)
            lexical = LexicalIndex.build(list(self.catalog.lexical_rows()))
            lexical.save(self.folder / "lexical", generation)
            self.catalog.set_meta("generation", generation)
            self._lexical = lexical

    def lexical_loaded(self, generation: str) -> LexicalIndex | None:
        """The BM25 index of the given generation (from memory or disk), or None."""
        if self._lexical is not None and getattr(self._lexical, "generation", None) == generation:
            return self._lexical
        loaded = LexicalIndex.load(self.folder / "lexical", generation)
        if loaded is not None:
            loaded.generation = generation  # type: ignore[attr-defined]
            self._lexical = loaded
        return loaded

    def lexical(self) -> LexicalIndex:
        """The current BM25 index (rebuilt from the catalog when its files are missing)."""
        generation = self.catalog.get_meta("generation") or "0"
        found = self.lexical_loaded(generation)
        if found is None:
            found = LexicalIndex.build(list(self.catalog.lexical_rows()))
            found.generation = generation  # type: ignore[attr-defined]
            self._lexical = found
        return found

    def _embed_pending(
        self,
        stats: IndexStats,
        progress: Progress | None,
        max_seconds: float | None = None,
        max_chunks: int | None = None,
        stop: threading.Event | None = None,
        first: list[str] | None = None,
    ) -> None:
        """Vectors for chunks without one: from the shared cache, else from the embedder.

        A round's vectors go into Chroma on a writer thread while the next round embeds, so the
        cores keep doing model work; a round is marked embedded in the catalog only after its
        upsert returned, and the next round skips the chunks still being written."""
        import numpy as np

        _, _, total = self.catalog.counts()
        done = 0
        started = time.perf_counter()
        writing: tuple[Future[None], list[str]] | None = None  # the previous round's upsert
        writer = ThreadPoolExecutor(1, thread_name_prefix="rag-upsert")
        try:
            while max_seconds is None or time.perf_counter() - started < max_seconds:
                limit = EMBED_BATCH if max_chunks is None else min(EMBED_BATCH, max_chunks - done)
                if limit <= 0 or (stop is not None and stop.is_set()):
                    break
                skip = set(writing[1]) if writing else set()
                batch = [
                    b for b in self.catalog.pending(limit + len(skip), first) if b[0] not in skip
                ][:limit]
                if not batch:
                    break
                hashes = [h for _, h, _ in batch]
                cached = self.cache.get_vectors(self.embedder_key, hashes)
                missing = [(i, h, t) for i, h, t in batch if h not in cached]
                if missing:
                    fresh = self.embedder.embed([t for _, _, t in missing])
                    self.cache.put_vectors(
                        self.embedder_key, [(h, fresh[n]) for n, (_, h, _) in enumerate(missing)]
                    )
                    for n, (_, h, _) in enumerate(missing):
                        cached[h] = fresh[n]
                stats.embedded += len(missing)
                stats.reused_vectors += len(batch) - len(missing)
                ids = [i for i, _, _ in batch]
                rows = self.catalog.chunks_by_id(ids)
                gone = [i for i in ids if i not in rows]  # removed by a concurrent file update
                if gone:
                    self.catalog.mark_embedded(gone)
                    keep = [n for n, i in enumerate(ids) if i in rows]
                    ids, hashes = [ids[n] for n in keep], [hashes[n] for n in keep]
                if ids:
                    metadatas = [
                        {
                            "path": rows[i].path,
                            "language": rows[i].language,
                            "kind": rows[i].kind,
                            "symbol": rows[i].symbol or "",
                            "start_line": rows[i].start_line,
                            "end_line": rows[i].end_line,
                        }
                        for i in ids
                    ]
                    matrix = np.stack([cached[h] for h in hashes])
                    self._finish_write(writing)
                    upsert = self.vectors.upsert  # Chroma opens here, is written there
                    writing = (writer.submit(upsert, ids, matrix, metadatas), ids)
                done += len(batch)
                if progress:
                    progress("embeddings", done, total)
        except BaseException:
            writer.shutdown(wait=True)
            if writing is not None and writing[0].exception() is None:
                self.catalog.mark_embedded(writing[1])  # it landed before the error: keep it
            raise
        writer.shutdown(wait=True)
        self._finish_write(writing)

    def _finish_write(self, writing: tuple[Future[None], list[str]] | None) -> None:
        """Wait for a round's upsert (its error is raised here), then mark its chunks embedded."""
        if writing is not None:
            writing[0].result()
            self.catalog.mark_embedded(writing[1])


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (made when missing) for the block, across processes."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
