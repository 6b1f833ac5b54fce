"""Retrieval quality on a fixed query set: recall@5 and MRR@10 over files, for four retrievers.

Usage: python bench/rag_eval.py REPO [--queries bench/eval/httpx_queries.json] [--home DIR]

- lexical: BM25 over chunks with the identifier-splitting tokenizer (rag's lexical index);
- vector: the embedder's nearest chunks (ChromaDB);
- hybrid: both fused by reciprocal rank plus the cheap reranking signals (what prompts get);
- whole-file BM25: plain BM25 (bm25s's default tokenizer and stop words) over whole files,
  the baseline the hybrid has to beat.

A chunk ranking becomes a file ranking by each file's first appearance. recall@5 is the share of
a query's answer files among the top 5 files, averaged over queries; MRR@10 is the mean of
1 / rank of the first answer file within the top 10 (0 when none is there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.embedders import EmbedderSpec
from rag.index import IndexSettings
from rag.retrieve import HybridRetriever

EXCLUDE = [".git/", "node_modules/", ".venv/", "dist/", "build/"]


def files_in_order(paths: list[str], limit: int = 10) -> list[str]:
    return list(dict.fromkeys(paths))[:limit]


def metrics(ranked: list[list[str]], answers: list[list[str]]) -> tuple[float, float]:
    recall = mrr = 0.0
    for files, relevant in zip(ranked, answers, strict=True):
        recall += len(set(files[:5]) & set(relevant)) / len(relevant)
        for rank, path in enumerate(files[:10], 1):
            if path in relevant:
                mrr += 1.0 / rank
                break
    return recall / len(answers), mrr / len(answers)


def whole_file_bm25(repo: Path, queries: list[str]) -> list[list[str]]:
    import bm25s

    listed = subprocess.run(
        ["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    paths, texts = [], []
    for rel in listed:
        try:
            texts.append((repo / rel).read_text(encoding="utf-8"))
            paths.append(rel)
        except (OSError, UnicodeDecodeError):
            continue
    model = bm25s.BM25()
    model.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    out = []
    for query in queries:
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        docs, _ = model.retrieve(tokens, k=10, show_progress=False)
        out.append([paths[i] for i in docs[0]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("repo", type=Path)
    parser.add_argument("--queries", type=Path, default=ROOT / "bench/eval/httpx_queries.json")
    parser.add_argument("--home", type=Path)
    parser.add_argument("--embedder", default="onnx", choices=["onnx", "hash"])
    args = parser.parse_args()
    spec = EmbedderSpec(
        args.embedder, "all-minilm-l6-v2-int8" if args.embedder == "onnx" else "256"
    )
    home = args.home or Path(tempfile.mkdtemp(prefix="rag-eval-"))
    data = json.loads(args.queries.read_text())["queries"]
    queries = [q["query"] for q in data]
    answers = [q["files"] for q in data]
    retriever = HybridRetriever(home / "indexes", spec, IndexSettings(exclude=EXCLUDE))
    stats = retriever.refresh_sync(args.repo)
    print(
        f"{args.repo}: {stats.files} files, {stats.chunks} chunks, embedder {spec.key}, {len(queries)} queries"
    )
    rows = {}
    for mode in ("lexical", "vector", "hybrid"):
        ranked = [
            files_in_order(
                [h.path for h in retriever.search_sync(q, repo=args.repo, k=60, mode=mode)]
            )
            for q in queries
        ]
        rows[mode] = metrics(ranked, answers)
    rows["whole-file BM25"] = metrics(
        whole_file_bm25(retriever.index_for(args.repo).root, queries), answers
    )
    print(f"{'retriever':<18} {'recall@5':>9} {'MRR@10':>8}")
    for name, (recall, mrr) in rows.items():
        print(f"{name:<18} {recall:>9.3f} {mrr:>8.3f}")


if __name__ == "__main__":
    main()
