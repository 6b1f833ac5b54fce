"""One Ollama embedding client (rag's OllamaEmbedder), against the fake Ollama server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.embedders import EmbedderError, EmbedderSpec, OllamaEmbedder, make_embedder
from tests.fakes.ollama_server import FakeOllama

TEXTS = ["def add(a, b): return a + b", "class Store: ...", "README", "x" * 300, "ümlaut"]
ROOT = Path(__file__).resolve().parent.parent


def test_embeds_in_order_and_in_batches(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = {"nomic-embed-text": 8192}
    embedder = OllamaEmbedder("nomic-embed-text", fake_ollama.url, batch_size=2)
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (5, 8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = embedder.embed(TEXTS[:2])
    assert np.array_equal(again, vectors[:2]), "the same text gets the same vector"
    calls = [r["body"]["input"] for r in fake_ollama.requests if r["path"] == "/api/embed"]
    assert calls[:3] == [TEXTS[0:2], TEXTS[2:4], TEXTS[4:]]


def test_a_missing_model_says_what_to_pull(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = {"nomic-embed-text": 8192}
    embedder = make_embedder(EmbedderSpec("ollama", "all-minilm", host=fake_ollama.url))
    with pytest.raises(EmbedderError, match="run: ollama pull all-minilm"):
        embedder.embed(["one"])


def test_only_rag_speaks_the_embedding_endpoint() -> None:
    """One client: no package but rag/embedders.py sends requests to /api/embed."""
    speakers = [
        str(path.relative_to(ROOT))
        for package in ("config", "core", "rag", "verify", "tui")
        for path in (ROOT / package).rglob("*.py")
        if "/api/embed" in path.read_text()
    ]
    assert speakers == ["rag/embedders.py"]
