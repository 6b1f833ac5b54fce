"""The ChromaDB vector store: one PersistentClient per home folder, telemetry off, one collection
per repository and embedder, and our own registered embedding function so that reopening a
collection never falls back to Chroma's downloading default.

Chroma's API is synchronous; callers in async code run these methods in a thread.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
_registered: list[type] = []


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
    """The process's PersistentClient for a folder (Chroma wants one per path)."""
    key = str(path)
    with _clients_lock:
        if key not in _clients:
            import chromadb
            from chromadb.config import Settings

            path.mkdir(parents=True, exist_ok=True)
            _clients[key] = chromadb.PersistentClient(
                path=key, settings=Settings(anonymized_telemetry=False, allow_reset=False)
            )
        return _clients[key]


class VectorStore:
    """One collection: chunk ids with their vectors and filterable metadata."""

    def __init__(self, path: Path, name: str, provider: str, model: str, host: str) -> None:
        self._function_args = (provider, model, host)
        function = embedding_function_class()(provider, model, host)
        try:
            self.client = client_for(path)
            self.collection = self.client.get_or_create_collection(
                name=name, embedding_function=function, configuration={"hnsw": {"space": "cosine"}}
            )
        except Exception as exc:  # chroma raises many kinds for a damaged store
            raise IndexCorruptError(f"vector store {path} / {name}: {exc}") from exc
        self.name = name

    def drop(self) -> None:
        """Delete the collection (and recreate it empty)."""
        self.client.delete_collection(self.name)
        self.collection = self.client.get_or_create_collection(
            name=self.name,
            embedding_function=embedding_function_class()(*self._function_args),
            configuration={"hnsw": {"space": "cosine"}},
        )

    def count(self) -> int:
        return int(self.collection.count())

    def upsert(self, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        batch = 4000
        for begin in range(0, len(ids), batch):
            self.collection.upsert(
                ids=ids[begin : begin + batch],
                embeddings=vectors[begin : begin + batch],
                metadatas=metadatas[begin : begin + batch],
            )

    def delete(self, ids: list[str]) -> None:
        for begin in range(0, len(ids), 4000):
            self.collection.delete(ids=ids[begin : begin + 4000])

    def query(
        self, vector: np.ndarray, n: int, where: dict[str, Any] | None
    ) -> list[tuple[str, float]]:
        """Nearest chunk ids with their cosine similarity, best first."""
        total = self.count()
        if total == 0:
            return []
        result = self.collection.query(
            query_embeddings=[vector],
            n_results=min(n, total),
            where=where or None,
            include=["distances"],
        )
        ids = result["ids"][0]
        distances = (result.get("distances") or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=False)]
