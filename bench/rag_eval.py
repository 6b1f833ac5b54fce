"""Retrieval quality on a fixed query set: recall@5 and MRR@10 over distinct files, for each
retriever and each stage of the default search, overall and per kind of query.

Usage: python bench/rag_eval.py REPO [--queries bench/rag_queries/sympy.jsonl] [--home DIR]
       [--embedder onnx|onnx-dq|onnx-t64|hash] [--lexical] [-k 30] [--per-query]

Stages (what `orchestrator search` does, built up one step at a time):
- whole-file BM25: plain BM25 (bm25s's tokenizer and English stop words) over whole files, the
  baseline the default search has to beat;
- lexical chunks: BM25 over chunks with the identifier-splitting tokenizer (rag's lexical index);
- vectors: the embedder's nearest chunks (ChromaDB);
- fusion: both fused by reciprocal rank, nothing else;
- + file list: a third list fused in, files ranked by their best chunks' summed BM25 scores
  (rag/rank.py), each given by its best chunk;
- rerank (default): that plus the reranking signals (symbol and path matches weighted by word
  rarity, a quoted message found where code says it, tests weigh less, file-level evidence,
  the document-type prior): what `orchestrator search` returns.

Query files: JSON lines `{"kind", "query", "files"}` (bench/rag_queries/) or the older JSON
document `{"queries": [{"query", "files"}]}` (bench/eval/). A chunk ranking becomes a file ranking
by each file's first appearance. recall@5 is the share of a query's answer files among the top 5
files; MRR@10 is 1 / rank of the first answer file within the top 10 (0 when none is there).
With --lexical no vectors are made: the fusion stages then show what a run sees before its
repository's vectors are in. --per-query prints each query's rank of its first answer file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.embedders import MINILM_FAST_NAME, MINILM_INT8_NAME, MINILM_NAME, EmbedderSpec
from rag.index import IndexSettings
from rag.retrieve import HybridRetriever

EXCLUDE = [".git/"]  # every file a person would search, docs included
STAGES = {
    "lexical chunks": {"mode": "lexical"},
    "vectors": {"mode": "vector"},
    "fusion": {"mode": "hybrid", "rerank": False, "file_level": False},
    "+ file list": {"mode": "hybrid", "rerank": False},
    "rerank (default)": {"mode": "hybrid"},
}


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
    return recall / max(len(answers), 1), mrr / max(len(answers), 1)


def load_queries(path: Path) -> list[dict[str, object]]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [{"kind": "all", **q} for q in json.loads(text)["queries"]]


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


def table(rankings: dict[str, list[list[str]]], answers: list[list[str]], kinds: list[str]) -> None:
    groups: dict[str, list[int]] = defaultdict(list)
    for n, kind in enumerate(kinds):
        groups[kind].append(n)
    names = ["all", *sorted(groups)] if len(groups) > 1 else ["all"]
    head = "".join(f" {name + f' ({len(groups.get(name, answers))})':>22}" for name in names)
    print(f"{'stage':<18}{head}")
    print(f"{'':<18}" + " ".join(f"{'recall@5  MRR@10':>22}" for _ in names))
    for stage, ranked in rankings.items():
        cells = []
        for name in names:
            picked = list(range(len(answers))) if name == "all" else groups[name]
            recall, mrr = metrics([ranked[i] for i in picked], [answers[i] for i in picked])
            cells.append(f"{recall:>13.3f} {mrr:>8.3f}")
        print(f"{stage:<18}" + " ".join(cells))


def per_query(
    rankings: dict[str, list[list[str]]], data: list[dict[str, object]], answers: list[list[str]]
) -> None:
    """Each query's rank of its first answer file in each stage ("-" when not in the top 10)."""
    stages = list(rankings)
    print("\n" + " ".join(f"{s[:8]:>8}" for s in stages) + "  kind        query")
    for n, q in enumerate(data):
        ranks = []
        for stage in stages:
            found = [r for r, p in enumerate(rankings[stage][n][:10], 1) if p in answers[n]]
            ranks.append(str(found[0]) if found else "-")
        print(" ".join(f"{r:>8}" for r in ranks) + f"  {q.get('kind', 'all'):<11} {q['query']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("repo", type=Path)
    parser.add_argument("--queries", type=Path, default=ROOT / "bench/eval/httpx_queries.json")
    parser.add_argument("--home", type=Path)
    parser.add_argument(
        "--embedder", default="onnx", choices=["onnx", "onnx-dq", "onnx-t64", "hash"]
    )
    parser.add_argument("--lexical", action="store_true", help="make no vectors")
    parser.add_argument("-k", type=int, default=30, help="chunks asked for per query")
    parser.add_argument("--per-query", action="store_true", help="print each query's ranks")
    args = parser.parse_args()
    models = {
        "onnx": ("onnx", MINILM_NAME),
        "onnx-dq": ("onnx", MINILM_INT8_NAME),
        "onnx-t64": ("onnx", MINILM_FAST_NAME),
    }
    spec = EmbedderSpec(*models.get(args.embedder, ("hash", "256")))
    home = args.home or Path(tempfile.mkdtemp(prefix="rag-eval-"))
    data = load_queries(args.queries)
    queries = [str(q["query"]) for q in data]
    answers = [list(q["files"]) for q in data]  # type: ignore[call-overload]
    kinds = [str(q.get("kind", "all")) for q in data]
    retriever = HybridRetriever(home / "indexes", spec, IndexSettings(exclude=EXCLUDE))
    started = time.perf_counter()
    stats = retriever.refresh_sync(args.repo, embed=not args.lexical)
    print(
        f"{args.repo}: {stats.files} files, {stats.chunks} chunks ({stats.pending} without a "
        f"vector), embedder {spec.key}, {len(queries)} queries; index {time.perf_counter() - started:.1f} s"
    )
    rankings: dict[str, list[list[str]]] = {
        "whole-file BM25": whole_file_bm25(retriever.index_for(args.repo).root, queries)
    }
    for stage, options in STAGES.items():
        if args.lexical and stage == "vectors":
            continue
        rankings[stage] = [
            files_in_order(
                [h.path for h in retriever.search_sync(q, repo=args.repo, k=args.k, **options)]  # type: ignore[arg-type]
            )
            for q in queries
        ]
    table(rankings, answers, kinds)
    if args.per_query:
        per_query(rankings, data, answers)


if __name__ == "__main__":
    main()
