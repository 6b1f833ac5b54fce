"""Embeddings through Ollama's /api/embed: the provider's embed() and the standalone rag helper."""

from __future__ import annotations

import socket

import pytest

from core.errors import LLMRetriableError, ModelNotFoundError
from core.llm.ollama import OllamaProvider
from rag.ollama_embed import OllamaEmbedError, embed_texts, embed_texts_sync
from tests.fakes.ollama_server import FakeOllama

TEXTS = ["def add(a, b): return a + b", "class Store: ...", "README", "x" * 300, "ümlaut"]


async def test_provider_embeds_in_order_and_in_batches(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = {"nomic-embed-text": 8192}
    provider = OllamaProvider(fake_ollama.url, 5, 1)
    try:
        vectors = await provider.embed(TEXTS, "nomic-embed-text")
    finally:
        await provider.aclose()
    assert len(vectors) == len(TEXTS) and all(len(v) == 8 for v in vectors)
    assert vectors[0] != vectors[1]
    again = await embed_texts(TEXTS[:2], model="nomic-embed-text", host=fake_ollama.url)
    assert again == vectors[:2], "the same text gets the same vector"
    calls = [r["body"] for r in fake_ollama.requests if r["path"] == "/api/embed"]
    assert calls[0]["input"] == TEXTS


async def test_batches_split_large_inputs(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = {"nomic-embed-text": 8192}
    vectors = await embed_texts(TEXTS, model="nomic-embed-text", host=fake_ollama.url, batch_size=2)
    assert len(vectors) == 5
    sizes = [len(r["body"]["input"]) for r in fake_ollama.requests if r["path"] == "/api/embed"]
    assert sizes == [2, 2, 1]


def test_sync_helper_for_threads_and_chromadb(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = {"nomic-embed-text": 8192}
    vectors = embed_texts_sync(["one", "two"], model="nomic-embed-text", host=fake_ollama.url)
    assert len(vectors) == 2
    with pytest.raises(OllamaEmbedError, match="ollama pull all-minilm") as caught:
        embed_texts_sync(["one"], model="all-minilm", host=fake_ollama.url)
    assert caught.value.missing_model and not caught.value.retriable


async def test_missing_model_and_unreachable_host(fake_ollama: FakeOllama) -> None:
    provider = OllamaProvider(fake_ollama.url, 5, 1)
    try:
        with pytest.raises(ModelNotFoundError, match="run: ollama pull nomic-embed-text"):
            await provider.embed(["x"], "nomic-embed-text")
    finally:
        await provider.aclose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = OllamaProvider(f"http://127.0.0.1:{port}", 5, 1)
    try:
        with pytest.raises(LLMRetriableError, match=f"127.0.0.1:{port}.*ollama serve"):
            await gone.embed(["x"], "nomic-embed-text")
    finally:
        await gone.aclose()


def test_the_embed_helper_imports_nothing_from_core() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, rag.ollama_embed\nprint([m for m in sys.modules if m.split('.')[0] == 'core'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
