"""RAG benchmark: indexes a repository and prints figures; asserts nothing.

Usage: python bench/rag.py PATH [--home DIR] [--embedder onnx|hash] [--raw-sample 1000]
                                [--queries 100] [--reuse]

Figures:
- files, chunks, seconds for the lexical index (listing, chunking, BM25; target < 15 s for a
  ~500k-line repository);
- seconds and chunks/s for embeddings through the pipeline (catalog, cache, ChromaDB), next to the
  raw chunks/s of the same model on a random sample of the same chunk texts; the ratio is the
  pipeline's own overhead (target >= 80 %);
- a re-index with no change inside the warm process (target < 2 s) and as a fresh
  `orchestrator index` process;
- hybrid query latency p50/p95 over varied queries (target p50 < 50 ms).

With --home the index is kept there; --reuse then takes the build figures saved by an earlier
run of the same home instead of indexing from scratch (the embedding of a large repository takes
many minutes on two cores).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.embedders import EmbedderSpec, MiniLMEmbedder, make_embedder
from rag.index import IndexSettings, RepoIndex

EXCLUDE = [".git/", "node_modules/", ".venv/", "dist/", "build/"]


def say(label: str, value: str) -> None:
    print(f"{label:<44} {value}", flush=True)


def build(index: RepoIndex, figures: dict[str, Any]) -> None:
    started = time.perf_counter()
    stats = index.update(embed=False)
    figures["lexical_seconds"] = time.perf_counter() - started
    figures["files"], figures["chunks"] = stats.files, stats.chunks
    figures["skipped"] = stats.skipped
    last = [time.perf_counter()]

    def progress(stage: str, done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 60:
            last[0] = time.perf_counter()
            print(f"  ... {stage} {done}/{total}", flush=True)

    started = time.perf_counter()
    stats = index.embed(progress, max_seconds=figures.get("embed_limit"))
    figures["embed_seconds"] = time.perf_counter() - started
    figures["embedded"] = stats.embedded
    figures["pending"] = stats.pending
    figures["reused_vectors"] = stats.reused_vectors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--embedder", default="onnx", choices=["onnx", "hash"])
    parser.add_argument("--raw-sample", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument(
        "--embed-seconds",
        type=float,
        help="stop embedding after this long (the rest stays lexical-only); for large repositories",
    )
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="rag-bench-"))
    indexes = home / "indexes"
    spec = EmbedderSpec(
        args.embedder, "all-minilm-l6-v2-int8" if args.embedder == "onnx" else "256"
    )
    figures_file = home / f"bench-{args.path.resolve().name}-{spec.key}.json"
    settings = IndexSettings(exclude=EXCLUDE, max_file_bytes=200_000)
    index = RepoIndex(args.path, indexes, spec, settings)
    print(f"repository {index.root}  embedder {spec.key}  home {home}", flush=True)

    if args.reuse and figures_file.exists():
        figures = json.loads(figures_file.read_text())
        print("(build figures reused from an earlier run of this home)")
    else:
        figures = {"embed_limit": args.embed_seconds}
        build(index, figures)
        figures_file.write_text(json.dumps(figures))
    say("files indexed", str(figures["files"]))
    say("files skipped", str(figures["skipped"]))
    say("chunks", str(figures["chunks"]))
    say("lexical index (list, chunk, BM25)", f"{figures['lexical_seconds']:.2f} s")
    rate = figures["embedded"] / figures["embed_seconds"] if figures["embed_seconds"] else 0.0
    if figures.get("pending"):
        say(
            "chunks left lexical-only (--embed-seconds)",
            f"{figures['pending']} (full embedding at this rate: "
            f"{figures['chunks'] / rate / 60 if rate else 0:.0f} min)",
        )
    say(
        "embeddings through the pipeline",
        f"{figures['embed_seconds']:.1f} s for {figures['embedded']} chunks = {rate:.1f} chunks/s",
    )

    # The raw model on a random sample of the same texts: no catalog, cache or vector store.
    rows = index.catalog.db.execute("SELECT path, symbol, text FROM chunks").fetchall()
    sample = random.Random(0).sample(rows, min(args.raw_sample, len(rows)))
    texts = [f"{p}{' ' + s if s else ''}\n{t}" for p, s, t in sample]
    raw = make_embedder(spec)
    if isinstance(raw, MiniLMEmbedder):
        raw.load()
    started = time.perf_counter()
    raw.embed(texts)
    raw_seconds = time.perf_counter() - started
    raw_rate = len(texts) / raw_seconds
    say(
        "raw model on a sample of the same texts",
        f"{len(texts)} in {raw_seconds:.1f} s = {raw_rate:.1f} chunks/s",
    )
    if rate:
        say("pipeline / raw throughput", f"{100 * rate / raw_rate:.0f} %")

    started = time.perf_counter()
    stats = index.update()
    say(
        "re-index, no change, warm process",
        f"{time.perf_counter() - started:.3f} s (changed files: {stats.changed_files})",
    )
    index.close()

    command = [
        sys.executable,
        "-m",
        "tui.cli",
        "--home",
        str(home),
        "index",
        str(index.root),
        "--json",
    ]
    if args.embedder != "onnx":
        command += ["--embedder", f"{spec.provider}:{spec.model}"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode == 0:
        inner = json.loads(proc.stdout)["seconds"]
        say("re-index, no change, fresh process", f"{elapsed:.2f} s wall ({inner:.3f} s inside)")
    else:
        say("re-index, fresh process", f"failed: {proc.stderr.strip()[-300:]}")

    from rag.retrieve import HybridRetriever

    retriever = HybridRetriever(indexes, spec, settings)
    words = [
        w for (s,) in index_symbols(index) for w in s.replace(".", "_").split("_") if len(w) > 3
    ]
    rng = random.Random(1)
    queries = [
        f"how does {rng.choice(words)} handle {rng.choice(words)} {rng.choice(words)}"
        for _ in range(args.queries)
    ]
    retriever.search_sync(queries[0], repo=index.root, k=10)  # warm: model and index loaded
    latencies = []
    for query in queries:
        started = time.perf_counter()
        retriever.search_sync(query, repo=index.root, k=10)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    say(
        "hybrid query latency",
        f"p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms ({len(latencies)} queries, k=10)",
    )


def index_symbols(index: RepoIndex) -> list[tuple[str]]:
    return index.catalog.db.execute(
        "SELECT DISTINCT symbol FROM chunks WHERE symbol IS NOT NULL LIMIT 5000"
    ).fetchall()


if __name__ == "__main__":
    main()
