"""Embeddings from an Ollama server (/api/embed), standalone so rag/ can use it without core/.

`embed_texts` is async (for the engine), `embed_texts_sync` is for synchronous callers such as a
chromadb embedding function. Both send texts in batches, always with a timeout, and raise
OllamaEmbedError with the host and, for a missing model, the `ollama pull` command to type.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import httpx
import ollama

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_BATCH = 64


class OllamaEmbedError(Exception):
    """Embedding failed; `retriable` tells a connection or server problem from a bad request."""

    def __init__(self, message: str, *, retriable: bool, missing_model: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.missing_model = missing_model


def _host(host: str | None) -> str:
    return host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def _timeout(timeout_seconds: float, connect_timeout_seconds: float) -> httpx.Timeout:
    return httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds)


def _mapped(error: BaseException, host: str, model: str) -> OllamaEmbedError:
    """Turn a client, transport or HTTP error into one OllamaEmbedError with what to do."""
    start = "Start it with `ollama serve`, or set llm.host / OLLAMA_HOST to where it runs."
    if isinstance(error, httpx.TimeoutException):
        return OllamaEmbedError(
            f"Ollama at {host} did not answer the embedding request in time. {start}",
            retriable=True,
        )
    if isinstance(error, (ConnectionError, httpx.TransportError)):
        return OllamaEmbedError(f"Cannot reach Ollama at {host}: {error}. {start}", retriable=True)
    if isinstance(error, ollama.ResponseError):
        if error.status_code == 404 or "not found" in str(error.error).lower():
            return OllamaEmbedError(
                f"Embedding model '{model}' is not available on Ollama at {host}; "
                f"run: ollama pull {model}",
                retriable=False,
                missing_model=True,
            )
        return OllamaEmbedError(
            f"Ollama at {host} failed to embed with '{model}' (HTTP {error.status_code}): "
            f"{error.error}",
            retriable=error.status_code == 429 or error.status_code >= 500,
        )
    return OllamaEmbedError(f"Embedding with Ollama at {host} failed: {error}", retriable=False)


def _check(vectors: Sequence[Sequence[float]], count: int, host: str, model: str) -> None:
    if len(vectors) != count:
        raise OllamaEmbedError(
            f"Ollama at {host} returned {len(vectors)} embeddings for {count} texts "
            f"with model '{model}'",
            retriable=False,
        )


async def embed_texts(
    texts: Sequence[str],
    *,
    model: str,
    host: str | None = None,
    timeout_seconds: float = 120.0,
    connect_timeout_seconds: float = 10.0,
    batch_size: int = DEFAULT_BATCH,
) -> list[list[float]]:
    """One vector per text, in order, from Ollama's /api/embed."""
    base = _host(host)
    client = ollama.AsyncClient(
        host=base, timeout=_timeout(timeout_seconds, connect_timeout_seconds)
    )
    vectors: list[list[float]] = []
    try:
        for start in range(0, len(texts), max(1, batch_size)):
            batch = list(texts[start : start + max(1, batch_size)])
            try:
                reply = await client.embed(model=model, input=batch)
            except Exception as error:
                raise _mapped(error, base, model) from error
            _check(reply.embeddings, len(batch), base, model)
            vectors.extend([list(map(float, v)) for v in reply.embeddings])
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    return vectors


def embed_texts_sync(
    texts: Sequence[str],
    *,
    model: str,
    host: str | None = None,
    timeout_seconds: float = 120.0,
    connect_timeout_seconds: float = 10.0,
    batch_size: int = DEFAULT_BATCH,
) -> list[list[float]]:
    """The synchronous twin of embed_texts, for callers that are not async (run it in a thread)."""
    base = _host(host)
    client = ollama.Client(host=base, timeout=_timeout(timeout_seconds, connect_timeout_seconds))
    vectors: list[list[float]] = []
    try:
        for start in range(0, len(texts), max(1, batch_size)):
            batch = list(texts[start : start + max(1, batch_size)])
            try:
                reply = client.embed(model=model, input=batch)
            except Exception as error:
                raise _mapped(error, base, model) from error
            _check(reply.embeddings, len(batch), base, model)
            vectors.extend([list(map(float, v)) for v in reply.embeddings])
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return vectors
