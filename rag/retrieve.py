"""Hybrid retrieval: BM25 and vector results fused by reciprocal rank, filtered by metadata,
reranked with cheap signals, grouped by file and formatted for a prompt within a token budget.

`HybridRetriever` keeps one warm `RepoIndex` per repository root. Its `*_sync` methods block
(chromadb, onnxruntime, SQLite); async callers use `retrieve`/`refresh`, which run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from pathlib import Path
from typing import Any

from rag.catalog import StoredChunk
from rag.embedders import Embedder, EmbedderSpec
from rag.errors import EmbedderError, IndexCorruptError
from rag.files import repo_root
from rag.format import Context, Hit, format_context
from rag.index import IndexSettings, IndexStats, Progress, RepoIndex
from rag.lexical import path_matches
from rag.processors import ProcessorRegistry
from rag.tokens import tokenize

log = logging.getLogger(__name__)

RRF_K = 60
_PATHLIKE = re.compile(r"[\w.\-/]+\.\w+")


def fuse(rankings: list[list[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: each list adds 1 / (k + rank) for every id it holds."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, 1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return scores


def named_paths(query: str, paths: set[str]) -> set[str]:
    """Repository files a query names by relative path or by a distinctive base name."""
    mentions = {m.strip("./") for m in _PATHLIKE.findall(query)}
    if not mentions:
        return set()
    found = {m for m in mentions if m in paths}
    names = {m for m in mentions if "/" not in m}
    if names:
        found |= {p for p in paths if p.rsplit("/", 1)[-1] in names}
    return found


_TEST_PATH = re.compile(
    r"(^|/)(tests?|__tests__|spec)/|(^|/)test_[^/]*$|_test\.\w+$|\.(test|spec)\.\w+$"
)
_TEST_WORDS = {"test", "tests", "testing", "spec", "fixture", "fixtures", "pytest"}


def is_test_path(path: str) -> bool:
    """True for files that hold tests (tests/ folders, test_*.py, *_test.go, *.spec.ts)."""
    return _TEST_PATH.search(path) is not None


def rerank_factor(query_terms: set[str], chunk: StoredChunk) -> float:
    """Tests answer "how is X done" less well than the code itself: they weigh less unless the
    query is about tests."""
    if is_test_path(chunk.path) and not (query_terms & _TEST_WORDS):
        return 0.6
    return 1.0


def rerank_bonus(query_terms: set[str], chunk: StoredChunk, named: set[str]) -> float:
    """Cheap signals added to the fused score: symbol and path words matching the query, and
    a file the task names outright."""
    if not query_terms:
        return 0.0
    bonus = 0.0
    if chunk.symbol:
        symbol_terms = set(tokenize(chunk.symbol))
        bonus += 0.01 * len(query_terms & symbol_terms) / len(query_terms)
    stem = chunk.path.rsplit(".", 1)[0]
    bonus += 0.005 * len(query_terms & set(tokenize(stem))) / len(query_terms)
    if chunk.path in named:
        bonus += 0.05
    return bonus


class HybridRetriever:
    """Searches repositories through their indexes (one warm RepoIndex per root)."""

    def __init__(
        self,
        indexes: Path,
        spec: EmbedderSpec,
        settings: IndexSettings | None = None,
        *,
        embedder: Embedder | None = None,
        registry: ProcessorRegistry | None = None,
    ) -> None:
        self.indexes = indexes
        self.spec = spec
        self.settings = settings or IndexSettings()
        self.embedder = embedder
        self.registry = registry
        self._open: dict[Path, RepoIndex] = {}
        self._lock = threading.Lock()

    def index_for(self, repo: Path) -> RepoIndex:
        """The warm index of the repository holding `repo` (opened on first use)."""
        root = repo_root(Path(repo))
        with self._lock:
            if root not in self._open:
                self._open[root] = RepoIndex(
                    root,
                    self.indexes,
                    self.spec,
                    self.settings,
                    embedder=self.embedder,
                    registry=self.registry,
                )
            return self._open[root]

    def forget_missing(self) -> None:
        """Close the warm indexes of roots that no longer exist (removed run worktrees)."""
        with self._lock:
            for root in [r for r in self._open if not r.exists()]:
                self._open.pop(root).close()

    def close(self) -> None:
        with self._lock:
            for index in self._open.values():
                index.close()
            self._open.clear()

    def refresh_sync(
        self,
        repo: Path,
        *,
        embed: bool = True,
        full: bool = False,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> IndexStats:
        """Bring the repository's index up to date (incrementally unless full)."""
        return self.index_for(repo).update(embed=embed, full=full, progress=progress, stop=stop)

    def embed_sync(
        self,
        repo: Path,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> IndexStats:
        """Fill in missing vectors of the repository's index (until done or `stop` is set)."""
        return self.index_for(repo).embed(progress, stop=stop)

    def search_sync(
        self,
        query: str,
        *,
        repo: Path,
        k: int = 10,
        path_glob: str | None = None,
        language: str | None = None,
        mode: str = "hybrid",
    ) -> list[Hit]:
        """The k best chunks for a query: mode is hybrid, lexical or vector."""
        index = self.index_for(repo)
        lexical = index.lexical()
        pool = max(50, 5 * k)
        lexical_ranked: list[str] = []
        if mode in ("hybrid", "lexical"):
            mask = lexical.mask(path_glob, language)
            lexical_ranked = [i for i, _ in lexical.search(query, pool, mask)]
        vector_ranked: list[str] = []
        _, chunks_total, pending = index.catalog.counts()
        if mode in ("hybrid", "vector") and chunks_total > pending:
            try:
                vector_ranked = self._vector_search(index, query, pool, path_glob, language)
            except (EmbedderError, IndexCorruptError) as exc:  # BM25 still answers
                if mode == "vector":
                    raise
                log.warning("vector search skipped: %s", exc)
        scores = fuse([lexical_ranked, vector_ranked])
        rows = index.catalog.chunks_by_id(list(scores))
        query_terms = set(tokenize(query))
        named = named_paths(query, set(lexical.paths))
        lex_pos = {i: n for n, i in enumerate(lexical_ranked, 1)}
        vec_pos = {i: n for n, i in enumerate(vector_ranked, 1)}
        hits: list[Hit] = []
        for chunk_id, base in scores.items():
            row = rows.get(chunk_id)
            if row is None:
                continue  # a vector left behind by an interrupted update
            bonus = 0.0
            if mode == "hybrid":
                bonus = rerank_bonus(query_terms, row, named)
                base *= rerank_factor(query_terms, row)
            hits.append(
                Hit(
                    path=row.path,
                    start_line=row.start_line,
                    end_line=row.end_line,
                    symbol=row.symbol,
                    kind=row.kind,
                    language=row.language,
                    score=base + bonus,
                    lexical_only=not row.embedded,
                    text=row.text,
                    lexical_rank=lex_pos.get(chunk_id),
                    vector_rank=vec_pos.get(chunk_id),
                )
            )
        hits.sort(key=lambda h: (-h.score, h.path, h.start_line))
        return hits[:k]

    def _vector_search(
        self,
        index: RepoIndex,
        query: str,
        pool: int,
        path_glob: str | None,
        language: str | None,
    ) -> list[str]:
        clauses: list[dict[str, Any]] = []
        if language:
            clauses.append({"language": language})
        allowed: set[str] | None = None
        if path_glob:
            allowed = {p for p in set(index.lexical().paths) if path_matches(p, path_glob)}
            if not allowed:
                return []
            if len(allowed) <= 500:
                clauses.append({"path": {"$in": sorted(allowed)}})
        where: dict[str, Any] | None = None
        if len(clauses) == 1:
            where = clauses[0]
        elif clauses:
            where = {"$and": clauses}
        vector = index.embedder.embed([query])[0]
        fetch = pool if allowed is None or len(allowed) <= 500 else pool * 4
        found = index.vectors.query(vector, fetch, where)
        ids = [i for i, _ in found]
        if allowed is not None and len(allowed) > 500:
            rows = index.catalog.chunks_by_id(ids)
            ids = [i for i in ids if i in rows and rows[i].path in allowed]
        return ids[:pool]

    def context_sync(
        self, query: str, *, repo: Path, budget_tokens: int, refresh: bool = True
    ) -> Context:
        """Search and format: the context a prompt gets (the index updated first when asked)."""
        if budget_tokens <= 0:
            return Context("", [], [])
        if refresh:
            self.refresh_sync(repo, embed=False)
        hits = self.search_sync(query, repo=repo, k=30)
        paths = sorted(set(self.index_for(repo).lexical().paths))
        return format_context(hits, budget_tokens, paths)

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> Context:
        """context_sync in a thread, so the event loop never waits on the index."""
        return await asyncio.to_thread(
            self.context_sync, query, repo=repo, budget_tokens=budget_tokens
        )
