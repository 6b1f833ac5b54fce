"""MiniLM's fused graph (rag.minilm_graph): the packaged model's vectors to float rounding, kept
as a file beside the indexes and made again when that file is damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.embedders import MiniLMEmbedder

# Lengths from one word piece to past the 128 cut, in one call, so batches mix padded rows.
TEXTS = [
    "x",
    "How do I reset my password?",
    "def parse_config(path):\n    return yaml.safe_load(open(path))\n",
    "class Session:\n"
    + "".join(f"    def method_{n}(self, arg):\n        return arg + {n}\n" for n in range(40)),
    "The connection pool is exhausted; raise pool_size or max_overflow. " * 12,
    "sqlalchemy/orm/session.py Session.flush\nflush all the object changes to the database",
]


def test_the_fused_graph_gives_the_packaged_graphs_vectors() -> None:
    packaged = MiniLMEmbedder(batch_size=4, fused=False)
    fused = MiniLMEmbedder(batch_size=4)
    a, b = packaged.embed(TEXTS), fused.embed(TEXTS)
    assert (packaged.graph, fused.graph) == ("packaged", "fused")
    assert a.shape == b.shape == (len(TEXTS), 384)
    assert float(np.abs(a - b).max()) < 1e-5
    alone = fused.embed([TEXTS[2]])  # padding in a batch changes nothing
    assert float(np.abs(alone[0] - b[2]).max()) < 1e-5


def test_the_fused_graph_is_kept_and_a_damaged_file_is_made_again(tmp_path: Path) -> None:
    first = MiniLMEmbedder(cache_dir=tmp_path)
    expected = first.embed(TEXTS[:3])
    kept = list(tmp_path.glob("minilm-fused-*.onnx"))
    assert len(kept) == 1 and kept[0].stat().st_size > 1_000_000
    assert not list(tmp_path.glob("*.part"))

    again = MiniLMEmbedder(cache_dir=tmp_path)
    assert float(np.abs(again.embed(TEXTS[:3]) - expected).max()) < 1e-6
    assert again.graph == "fused"

    kept[0].write_bytes(b"not a model")
    repaired = MiniLMEmbedder(cache_dir=tmp_path)
    assert float(np.abs(repaired.embed(TEXTS[:3]) - expected).max()) < 1e-6
    assert repaired.graph == "fused" and kept[0].stat().st_size > 1_000_000


def test_the_int8_variant_is_its_own_space_close_to_the_float_one(tmp_path: Path) -> None:
    from rag.embedders import MINILM_INT8_NAME, EmbedderSpec, make_embedder

    float_ = MiniLMEmbedder(batch_size=4)
    int8 = make_embedder(EmbedderSpec("onnx", MINILM_INT8_NAME), tmp_path)
    assert isinstance(int8, MiniLMEmbedder)
    assert int8.key == EmbedderSpec("onnx", MINILM_INT8_NAME).key != float_.key
    a, b = float_.embed(TEXTS), int8.embed(TEXTS)
    assert int8.graph == "int8" and list(tmp_path.glob("minilm-int8-*.onnx"))
    cosine = (a * b).sum(axis=1)
    assert float(cosine.min()) > 0.97  # close: the same weights, int8 arithmetic
    assert float(np.abs(a - b).max()) > 1e-4  # but not the same vectors: another index
    # it still tells a paraphrase from an unrelated sentence
    v = int8.embed(
        ["How do I reset my password?", "What are the steps to change my password?", "The cat sat."]
    )
    assert float(v[0] @ v[1]) - float(v[0] @ v[2]) > 0.5


def test_batches_run_side_by_side_give_each_text_its_own_vector() -> None:
    texts = [f"{text} {n}" for n in range(5) for text in TEXTS]  # 30 texts: eight batches of 4
    parallel = MiniLMEmbedder(batch_size=4, threads=2)
    serial = MiniLMEmbedder(batch_size=4, threads=1)
    a, b = parallel.embed(texts), serial.embed(texts)
    assert float(np.abs(a - b).max()) < 1e-6
    # each row is its text's vector, whatever batch or thread made it
    assert float(np.abs(serial.embed([texts[17]])[0] - a[17]).max()) < 1e-5
    assert parallel._pool is not None and serial._pool is None
