"""The ChromaDB vector store: one PersistentClient per home folder, telemetry off, one collection
per repository and embedder, and our own registered embedding function so that reopening a
collection never falls back to Chroma's downloading default.

Chroma's API is synchronous; callers in async code run these methods in a thread.

Processes share the store safely: creating the store and creating, deleting or rebuilding a
collection hold an exclusive file lock on the whole store (`locks/store.lock` beside it); writes
to a collection hold that collection's lock exclusively and reads hold it shared. A collection
that cannot be opened is deleted and created again alone; the store itself is never deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

log = logging.getLogger(__name__)

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
_registered: list[type] = []
_HNSW = {"hnsw": {"space": "cosine"}}


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """An fcntl lock on `path` (created if missing) across processes, shared or exclusive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_folder(store: Path) -> Path:
    """Where the store's lock files live (beside the store, so a store rebuild keeps them)."""
    return store.parent / "locks"


def store_lock(store: Path) -> Any:
    """The whole store's creation lock (store, collections)."""
    return file_lock(lock_folder(store) / "store.lock")


def embedding_function_class() -> type:
    """The registered embedding function class (registered once per process)."""
    if _registered:
        return _registered[0]
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    @register_embedding_function
    class OrchestratorEmbeddingFunction(EmbeddingFunction[Documents]):
        """Embeds with the orchestrator's configured embedder (vectors are usually passed in)."""

        def __init__(self, provider: str = "onnx", model: str = "", host: str = "") -> None:
            self.provider, self.model, self.host = provider, model, host
            self._embedder: Any = None

        def __call__(self, input: Documents) -> Embeddings:
            if self._embedder is None:
                from rag.embedders import EmbedderSpec, make_embedder

                spec = EmbedderSpec(self.provider, self.model, self.host or EmbedderSpec.host)
                self._embedder = make_embedder(spec)
            return list(self._embedder.embed(list(input)))

        @staticmethod
        def name() -> str:
            return "agent_orchestrator_embedder"

        def default_space(self) -> Any:
            return "cosine"

        def supported_spaces(self) -> Any:
            return ["cosine"]

        def get_config(self) -> dict[str, Any]:
            return {"provider": self.provider, "model": self.model, "host": self.host}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> OrchestratorEmbeddingFunction:
            return OrchestratorEmbeddingFunction(
                config.get("provider", "onnx"), config.get("model", ""), config.get("host", "")
            )

    _registered.append(OrchestratorEmbeddingFunction)
    return OrchestratorEmbeddingFunction


def client_for(path: Path) -> Any:
    """The process's PersistentClient for a folder (Chroma wants one per path); the first
    creation of the store is locked across processes."""
    key = str(path)
    with _clients_lock:
        if key not in _clients:
            import chromadb
            from chromadb.config import Settings

            with store_lock(path):
                path.mkdir(parents=True, exist_ok=True)
                _clients[key] = chromadb.PersistentClient(
                    path=key, settings=Settings(anonymized_telemetry=False, allow_reset=False)
                )
        return _clients[key]


def close_clients() -> None:
    """Close the process's Chroma clients: the next use opens the store afresh and so sees what
    other processes wrote (a client's loaded collections do not follow other writers)."""
    with _clients_lock:
        for client in _clients.values():
            try:
                client.close()
            except Exception:  # closing is best effort: the client is dropped anyway
                log.debug("closing a Chroma client failed", exc_info=True)
        _clients.clear()


def delete_collection(path: Path, name: str) -> None:
    """Delete one collection of the store (missing is fine), under the store lock."""
    delete_collections(path, [name])


def delete_collections(path: Path, names: list[str]) -> None:
    """Delete collections of the store (missing ones are fine), under one hold of the store lock."""
    client = client_for(path)  # before the lock: a first client_for takes the same lock itself
    with store_lock(path):
        for name in names:
            try:
                client.delete_collection(name)
            except Exception:  # noqa: BLE001 - already gone, or damaged beyond reading: gone
                log.debug("collection %s of %s was not there to delete", name, path)


class VectorStore:
    """One collection: chunk ids with their vectors and filterable metadata.

    `rebuilt` says why the collection was found broken and created again empty (None when it
    opened as it was); the index then embeds its chunks again.
    """

    def __init__(self, path: Path, name: str, provider: str, model: str, host: str) -> None:
        self._function_args = (provider, model, host)
        self.path, self.name = path, name
        self.rebuilt: str | None = None
        self._lock_file = lock_folder(path) / f"{name}.lock"
        try:
            self.client = client_for(path)
        except Exception as exc:  # chroma raises many kinds for a store it cannot open
            raise IndexCorruptError(
                f"the vector store {path} cannot be opened ({exc}); stop the other orchestrator "
                f"processes and run `orchestrator doctor`, or move {path} away to start it afresh"
            ) from exc
        try:
            self.collection = self._get_or_create()
        except Exception as exc:  # noqa: BLE001 - chroma raises many kinds for a damaged collection
            log.warning(
                "vector collection %s of %s is unreadable (%s); rebuilding it", name, path, exc
            )
            self.rebuilt = f"vector collection {name}: {exc}"
            try:
                self.drop()
            except Exception as again:
                raise IndexCorruptError(
                    f"the vector collection {name} in {path} cannot be rebuilt ({again}); run "
                    "`orchestrator doctor`"
                ) from again

    def _get_or_create(self) -> Any:
        with store_lock(self.path):
            return self.client.get_or_create_collection(
                name=self.name,
                embedding_function=embedding_function_class()(*self._function_args),
                configuration=_HNSW,
            )

    def drop(self) -> None:
        """Delete the collection (and recreate it empty); other collections are untouched."""
        with file_lock(self._lock_file):
            delete_collection(self.path, self.name)
            self.collection = self._get_or_create()

    def count(self) -> int:
        with file_lock(self._lock_file, shared=True):
            return int(self.collection.count())

    def upsert(self, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        batch = 4000
        with file_lock(self._lock_file):
            for begin in range(0, len(ids), batch):
                self.collection.upsert(
                    ids=ids[begin : begin + batch],
                    embeddings=vectors[begin : begin + batch],
                    metadatas=metadatas[begin : begin + batch],
                )

    def delete(self, ids: list[str]) -> None:
        with file_lock(self._lock_file):
            for begin in range(0, len(ids), 4000):
                self.collection.delete(ids=ids[begin : begin + 4000])

    def query(
        self, vector: np.ndarray, n: int, where: dict[str, Any] | None
    ) -> list[tuple[str, float]]:
        """Nearest chunk ids with their cosine similarity, best first (IndexCorruptError when
        the collection cannot answer: search then answers lexically). Chroma's embedded mode
        persists a writer's HNSW files in batches, so a process reading a collection another
        process is filling may find them missing ("Nothing found on disk") until then."""
        try:
            with file_lock(self._lock_file, shared=True):  # chroma caps n at what it holds
                result = self.collection.query(
                    query_embeddings=[vector],
                    n_results=n,
                    where=where or None,
                    include=["distances"],
                )
        except Exception as exc:  # chroma raises many kinds; the lexical half still answers
            raise IndexCorruptError(
                f"vector collection {self.name} cannot be searched: {exc}"
            ) from exc
        ids = result["ids"][0]
        distances = (result.get("distances") or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=False)]
