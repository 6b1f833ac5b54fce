"""The shared-store test's processes: `store_worker N HOME... -- REPO...` imports rag and chromadb
once, then forks N processes (separate processes, each with its own Chroma client, without
paying the imports N times); process n indexes REPO[n % len(REPO)] in each home in turn with
the hashing embedder (lexical, vectors) and searches it as a run does (hybrid: a vector read
that meets another process's unflushed HNSW files answers lexically). Prints one line per round
and exits 0 when every process answered every round."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import chromadb  # noqa: F401  (imported before forking, so children start warm)

from rag.embedders import EmbedderSpec
from rag.retrieve import HybridRetriever


def rounds(repo: Path, homes: list[str]) -> int:
    for home in homes:
        retriever = HybridRetriever(Path(home) / "indexes", EmbedderSpec("hash", "256"))
        stats = retriever.refresh_sync(repo)
        hits = retriever.search_sync("parse the config", repo=repo, k=3)
        retriever.close()
        if stats.pending or not hits:
            print(f"{os.getpid()} {home}: pending {stats.pending}, {len(hits)} hits", flush=True)
            return 1
        by_vector = any(h.vector_rank for h in hits)
        print(
            f"{os.getpid()} {home}: ok {stats.chunks} chunks, vector hits {by_vector}, "
            f"notices {stats.rebuilt}",
            flush=True,
        )
    return 0


def main() -> int:
    count = int(sys.argv[1])
    split = sys.argv.index("--")
    homes, repos = sys.argv[2:split], [Path(r) for r in sys.argv[split + 1 :]]
    children = []
    for n in range(count):
        pid = os.fork()
        if pid == 0:  # the child: its own process from here on
            code = 1
            try:
                code = rounds(repos[n % len(repos)], homes)
            except BaseException as exc:  # noqa: BLE001 - reported, then the child exits
                print(f"{os.getpid()}: {type(exc).__name__}: {exc}", flush=True)
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.append(pid)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    print(f"{failed} of {count} processes failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
