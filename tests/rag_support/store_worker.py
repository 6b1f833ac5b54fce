"""One process of the shared-store test: for each home folder given, index a repository with the
hashing embedder (lexical, vectors) and search it; prints one line per home and exits 0 when
every round answered."""

from __future__ import annotations

import sys
from pathlib import Path

from rag.embedders import EmbedderSpec
from rag.retrieve import HybridRetriever


def main() -> int:
    repo = Path(sys.argv[1])
    for home in sys.argv[2:]:
        retriever = HybridRetriever(Path(home) / "indexes", EmbedderSpec("hash", "256"))
        stats = retriever.refresh_sync(repo)
        hits = retriever.search_sync("parse the config", repo=repo, k=3, mode="vector")
        retriever.close()
        if stats.pending or not hits:
            print(f"{home}: pending {stats.pending}, {len(hits)} hits", flush=True)
            return 1
        print(f"{home}: ok {stats.chunks} chunks, notices {stats.rebuilt}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
