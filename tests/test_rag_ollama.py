"""Ollama embeddings through /api/embed, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from rag.embedders import EmbedderError, EmbedderSpec, HashingEmbedder, make_embedder
from rag.index import IndexSettings
from rag.retrieve import HybridRetriever
from tests.conftest import make_repo


class _EmbedHandler(BaseHTTPRequestHandler):
    """Speaks Ollama's /api/embed for the model `nomic-embed-text` (48-dim vectors)."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "body": body})
        if self.path != "/api/embed":
            self._send(404, {"error": "not found"})
        elif body.get("model") != "nomic-embed-text":
            self._send(404, {"error": f"model '{body.get('model')}' not found"})
        else:
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = HashingEmbedder(48).embed(texts) * 3.0  # not normalised, as a server may send
            self._send(200, {"model": body["model"], "embeddings": vectors.tolist()})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def embed_server() -> Iterator[str]:
    _EmbedHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_index_with_ollama_embeddings(embed_server: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"calc.py": "def add(a, b):\n    return a + b\n"})
    spec = EmbedderSpec("ollama", "nomic-embed-text", host=embed_server)
    retriever = HybridRetriever(tmp_path / "idx", spec, IndexSettings(exclude=[".git/"]))
    stats = retriever.refresh_sync(repo)
    assert stats.embedder == "ollama-nomic-embed-text" and stats.embedded == 1
    sent = [r for r in _EmbedHandler.requests if r["path"] == "/api/embed"]
    assert sent[0]["body"]["model"] == "nomic-embed-text"
    assert sent[0]["body"]["input"] == ["calc.py add\ndef add(a, b):\n    return a + b\n"]
    hits = retriever.search_sync("add two numbers", repo=repo, mode="vector")
    assert hits[0].symbol == "add" and not hits[0].lexical_only
    stored = retriever.index_for(repo).vectors.collection.get(include=["embeddings"])
    vector = np.asarray(stored["embeddings"][0])
    assert vector.shape == (48,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_ollama_errors_say_what_to_do(embed_server: str) -> None:
    missing = make_embedder(EmbedderSpec("ollama", "no-such-model", host=embed_server))
    with pytest.raises(EmbedderError, match="not found; run: ollama pull no-such-model"):
        missing.embed(["x"])
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = make_embedder(
        EmbedderSpec("ollama", "nomic-embed-text", host=f"http://127.0.0.1:{port}")
    )
    with pytest.raises(EmbedderError, match=f"cannot reach Ollama at http://127.0.0.1:{port}"):
        gone.embed(["x"])
    with pytest.raises(EmbedderError, match="unknown embedder provider 'sentencepiece'"):
        make_embedder(EmbedderSpec("sentencepiece", "x"))


def test_search_falls_back_to_bm25_when_the_embedding_server_goes_away(
    embed_server: str, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "r", {"calc.py": "def add(a, b):\n    return a + b\n"})
    spec = EmbedderSpec("ollama", "nomic-embed-text", host=embed_server)
    retriever = HybridRetriever(tmp_path / "idx", spec, IndexSettings(exclude=[".git/"]))
    retriever.refresh_sync(repo)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retriever.close()
    moved = EmbedderSpec("ollama", "nomic-embed-text", host=f"http://127.0.0.1:{port}")
    retriever = HybridRetriever(tmp_path / "idx", moved, IndexSettings(exclude=[".git/"]))
    hits = retriever.search_sync("add numbers", repo=repo)  # same index: the key has no host
    assert hits[0].symbol == "add" and hits[0].lexical_rank == 1 and hits[0].vector_rank is None
    with pytest.raises(EmbedderError, match="cannot reach Ollama"):
        retriever.search_sync("add numbers", repo=repo, mode="vector")
