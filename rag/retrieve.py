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
from rag.format import Context, Hit, format_context
from rag.index import IndexSettings, IndexStats, Progress, RepoIndex
from rag.lexical import path_matches
from rag.overlay import (
    INLINE_OVERLAY_CHUNKS,
    Overlay,
    OverlayMemo,
    build_overlay,
    changed_paths,
    embed_hashes,
    stat_signature,
    worktree_roots,
)
from rag.processors import ProcessorRegistry
from rag.rank import file_ranking, holds_phrase, quoted_phrase, term_weights, weighted_share
from rag.tokens import tokenize

log = logging.getLogger(__name__)

RRF_K = 60
FILE_EVIDENCE = 0.05  # share of a file's other best chunks' scores each chunk gains
PROSE_WEIGHT = 0.5  # documentation's weight for a question that is not about docs
NAME_BONUS = 0.03  # a name the query writes as code, defined by the chunk
PHRASE_BONUS = 0.03  # a query of several words found verbatim in the chunk (a quoted message)
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
    r"(^|/)(tests?|__tests__|spec|test[-_]?data)/|(^|/)test_[^/]*$|_test\.\w+$|\.(test|spec)\.\w+$"
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


_PROSE = frozenset({"markdown", "rst", "text", "html"})
_DOC_WORDS = {
    "doc", "docs", "documentation", "documented", "readme", "guide", "tutorial", "changelog",
    "example", "examples", "faq", "install", "installation", "manual", "howto", "glossary",
}  # fmt: skip
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def is_prose(row: StoredChunk) -> bool:
    """Chunks of documentation rather than code (markdown, reStructuredText, plain text)."""
    return row.language in _PROSE


def query_identifiers(query: str) -> set[str]:
    """Words of the query written as code names (snake_case, CamelCase, dotted): lower-cased
    last components, which a symbol that defines them matches exactly."""
    found: set[str] = set()
    for word in _IDENTIFIER.findall(query):
        last = word.rsplit(".", 1)[-1]
        if (
            "_" in last.strip("_")
            or "." in word
            or re.search(r"[a-z][A-Z]|^[A-Z][a-z]+[A-Z]", last)
        ):
            found.add(last.lower())
        elif len(query.split()) == 1 and len(last) > 2:
            found.add(last.lower())  # a query of one word is a name
    return found


def rerank_bonus(
    query_terms: set[str],
    chunk: StoredChunk,
    named: set[str],
    weights: dict[str, float] | None = None,
) -> float:
    """Cheap signals added to the fused score: symbol and path words matching the query (each
    word by its weight, evenly when none are given), and a file the task names outright."""
    if not query_terms:
        return 0.0
    weights = weights or dict.fromkeys(query_terms, 1.0)
    bonus = 0.0
    if chunk.symbol:
        bonus += 0.01 * weighted_share(query_terms & set(tokenize(chunk.symbol)), weights)
    stem = chunk.path.rsplit(".", 1)[0]
    bonus += 0.005 * weighted_share(query_terms & set(tokenize(stem)), weights)
    if chunk.path in named:
        bonus += 0.05
    return bonus


def rerank_scores(
    query: str,
    scores: dict[str, float],
    rows: dict[str, StoredChunk],
    named: set[str],
    weights: dict[str, float] | None = None,
) -> dict[str, float]:
    """Fused chunk scores reranked with what a chunk alone does not show:

    - symbol and path words matching the query (rare words count more: `weights`), a name
      the query writes as code (`create_engine`, `QueuePool`) defined by the chunk, a file the
      query names, a query of several words the chunk holds verbatim (a quoted message);
    - tests weigh less unless the query is about tests, and documentation weighs less unless
      the query is about documentation (a document-type prior: code questions get code first);
    - file-level evidence: a file with several matching chunks is more likely the answer than
      one lucky chunk, so each chunk gains a share of its file's other chunks' scores.
    """
    terms = set(tokenize(query))
    names = query_identifiers(query)
    about_docs = bool(terms & _DOC_WORDS)
    phrase = quoted_phrase(query)
    adjusted: dict[str, float] = {}
    for chunk_id, base in scores.items():
        row = rows.get(chunk_id)
        if row is None:
            continue
        prior = rerank_factor(terms, row)
        if is_prose(row) and not about_docs:
            prior *= PROSE_WEIGHT
        bonus = rerank_bonus(terms, row, named, weights)
        if names and row.symbol and row.symbol.rsplit(".", 1)[-1].lower() in names:
            bonus += NAME_BONUS
        if phrase and prior == 1.0 and holds_phrase(row.text, phrase):
            bonus += PHRASE_BONUS  # where code says it (tests and docs only quote it)
        adjusted[chunk_id] = base * prior + bonus
    by_file: dict[str, list[float]] = {}
    for chunk_id, score in adjusted.items():
        by_file.setdefault(rows[chunk_id].path, []).append(score)
    top = {path: sorted(found, reverse=True)[:4] for path, found in by_file.items()}
    out: dict[str, float] = {}
    for chunk_id, score in adjusted.items():
        best = top[rows[chunk_id].path]
        others = sum(best) - score if score in best else sum(best[:3])
        out[chunk_id] = score + FILE_EVIDENCE * others
    return out


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
        self._overlays: dict[Path, Overlay] = {}
        self._overlay_memos: dict[Path, OverlayMemo] = {}  # per index root
        self._resolved: dict[str, tuple[Path, Path | None]] = {}
        self._lock = threading.Lock()

    def _roots(self, repo: Path) -> tuple[Path, Path | None]:
        """(root of the index, worktree root or None): a linked worktree of a repository is
        searched through that repository's index plus its own overlay."""
        key = str(repo)
        found = self._resolved.get(key)
        if found is None or not found[0].exists() or (found[1] and not found[1].exists()):
            root, main = worktree_roots(Path(repo))
            found = (main, root) if main is not None else (root, None)
            self._resolved[key] = found
        return found

    def index_for(self, repo: Path) -> RepoIndex:
        """The warm index of the repository holding `repo` (opened on first use); a linked
        worktree shares the index of the repository it belongs to."""
        return self._index_at(self._roots(repo)[0])

    def _index_at(self, root: Path) -> RepoIndex:
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
        """Close the warm indexes of roots that no longer exist, drop removed worktrees' overlays."""
        with self._lock:
            for root in [r for r in self._open if not r.exists()]:
                self._open.pop(root).close()
                self._overlay_memos.pop(root, None)
            for tree in [t for t in self._overlays if not t.exists()]:
                self._overlays.pop(tree)
            self._resolved.clear()

    def reopen_changed(self) -> None:
        """For a long-lived process (the search daemon): reopen what other processes changed
        since this one opened it, as a new process would see it: an index whose catalog file
        was replaced, and the vector store once any index's vectors changed (an opened Chroma
        collection does not show vectors another process added)."""
        from rag.vectors import close_clients

        with self._lock:
            for root in [r for r, index in self._open.items() if index.replaced()]:
                self._open.pop(root).close()
            if any(index.vectors_stale() for index in self._open.values()):
                log.info("vectors changed since they were opened: reopening the vector store")
                close_clients()
                for index in self._open.values():
                    index.forget_vectors()

    def close(self) -> None:
        with self._lock:
            for index in self._open.values():
                index.close()
            self._open.clear()
            self._overlays.clear()
            self._overlay_memos.clear()

    def refresh_sync(
        self,
        repo: Path,
        *,
        embed: bool = True,
        full: bool = False,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ) -> IndexStats:
        """Bring the repository's index up to date (incrementally unless full). For a linked
        worktree the shared index is built only when missing (a run does not change the
        repository it started from) and the worktree's overlay is brought up to date."""
        base, tree = self._roots(repo)
        index = self._index_at(base)
        if tree is None or full or index.snapshot()[0] is None:
            stats = index.update(embed=embed, full=full, progress=progress, stop=stop)
        else:
            stats = index.current_stats()
        if tree is not None:
            self.overlay_sync(index, tree)
        return stats

    def overlay_sync(self, index: RepoIndex, tree: Path) -> Overlay:
        """The worktree's overlay, rebuilt when its changed files changed on disk; its vectors
        come from the shared cache, and up to INLINE_OVERLAY_CHUNKS new ones are embedded now."""
        head, dirty = index.snapshot()
        paths = (changed_paths(tree, head) if head else set()) | dirty
        files = stat_signature(tree, paths)
        signature = (files, index.catalog.get_meta("generation"), head)
        overlay = self._overlays.get(tree)
        if overlay is None or overlay.signature != signature:
            memo = self._overlay_memos.setdefault(index.root, OverlayMemo())
            overlay = build_overlay(
                tree, paths, index.selector(), index.chunk_file, files, signature, memo
            )
            self._overlays[tree] = overlay
        if overlay.pending:
            self._embed_overlay(index, overlay)
        return overlay

    def _embed_overlay(self, index: RepoIndex, overlay: Overlay) -> None:
        import numpy as np

        todo = [
            (n, h, overlay.chunks[n])
            for n, h in enumerate(embed_hashes(overlay.chunks))
            if not overlay.embedded[n]
        ]
        cached = index.cache.get_vectors(index.embedder_key, [h for _, h, _ in todo])
        missing = [(n, h, c) for n, h, c in todo if h not in cached][:INLINE_OVERLAY_CHUNKS]
        if missing:
            try:
                fresh = index.embedder.embed([c.embed_text() for _, _, c in missing])
            except EmbedderError as exc:  # the overlay stays lexical until the embedder answers
                log.warning("embedding a worktree's changed files failed: %s", exc)
                fresh = None
            if fresh is not None:
                index.cache.put_vectors(
                    index.embedder_key, [(h, fresh[k]) for k, (_, h, _) in enumerate(missing)]
                )
                cached.update({h: fresh[k] for k, (_, h, _) in enumerate(missing)})
        for n, h, _ in todo:
            vector = cached.get(h)
            if vector is None:
                continue
            if overlay.vectors is None:
                overlay.vectors = np.zeros((len(overlay.chunks), len(vector)), dtype=np.float32)
            overlay.vectors[n] = vector
            overlay.embedded[n] = True

    def _view(self, repo: Path) -> tuple[RepoIndex, Overlay | None]:
        base, tree = self._roots(repo)
        index = self._index_at(base)
        if tree is None:
            return index, None
        overlay = self._overlays.get(tree)
        return index, overlay if overlay is not None else self.overlay_sync(index, tree)

    def paths_sync(self, repo: Path) -> list[str]:
        """The indexed files the repository (or worktree) shows, sorted."""
        index, overlay = self._view(repo)
        paths = set(index.lexical().paths)
        if overlay is not None:
            paths = (paths - overlay.hidden) | overlay.paths
        return sorted(paths)

    def embed_sync(
        self,
        repo: Path,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        first: list[str] | None = None,
    ) -> IndexStats:
        """Fill in missing vectors of the repository's index (until done or `stop` is set),
        those of the files in `first` before the rest."""
        return self.index_for(repo).embed(progress, stop=stop, first=first)

    def search_sync(
        self,
        query: str,
        *,
        repo: Path,
        k: int = 10,
        path_glob: str | None = None,
        language: str | None = None,
        mode: str = "hybrid",
        rerank: bool = True,
        file_level: bool = True,
    ) -> list[Hit]:
        """The k best chunks for a query: mode is hybrid, lexical or vector; hybrid fuses a
        file-level lexical ranking too unless `file_level` is False, and reranks the fused list
        unless `rerank` is False (bench/rag_eval.py measures each stage)."""
        index, overlay = self._view(repo)
        lexical = index.lexical()
        hidden = overlay.hidden if overlay is not None else set()
        extra = overlay.rows() if overlay is not None else {}
        extra = {
            i: r
            for i, r in extra.items()
            if (not language or r.language == language)
            and (not path_glob or path_matches(r.path, path_glob))
        }
        pool = max(50, 5 * k)
        lexical_ranked: list[str] = []
        file_ranked: list[str] = []
        if mode in ("hybrid", "lexical"):
            mask = lexical.mask(path_glob, language, hidden)
            all_scores = lexical.scores(query, mask)
            scored = [] if all_scores is None else lexical.best(all_scores, pool)
            more: list[tuple[str, float]] = []
            if overlay is not None and extra:
                words = tokenize(query)
                more = [
                    (i, sc)
                    for i, sc in overlay.lexical(
                        query, lexical.doc_freq(words), len(lexical.ids), lexical.avgdl
                    )
                    if i in extra
                ]
                scored = sorted(scored + more, key=lambda x: -x[1])[:pool]
            lexical_ranked = [i for i, _ in scored]
            if mode == "hybrid" and file_level:
                file_ranked = file_ranking(
                    lexical.ids,
                    lexical.file_codes,
                    all_scores,
                    pool,
                    [(i, extra[i].path, sc) for i, sc in more],
                )
        vector_ranked: list[str] = []
        _, chunks_total, pending = index.catalog.counts()
        has_vectors = chunks_total > pending or bool(overlay and any(overlay.embedded))
        if mode in ("hybrid", "vector") and has_vectors:
            try:
                vector_ranked = self._vector_search(
                    index, overlay, extra, query, pool, path_glob, language
                )
            except (EmbedderError, IndexCorruptError) as exc:  # BM25 still answers
                if mode == "vector":
                    raise
                log.warning("vector search skipped: %s", exc)
        scores = fuse([lexical_ranked, vector_ranked, file_ranked])
        rows = index.catalog.chunks_by_id([i for i in scores if i not in extra])
        rows.update({i: r for i, r in extra.items() if i in scores})
        rows = {
            i: r
            for i, r in rows.items()
            if r.path not in hidden or i in extra  # not a vector of a hidden copy
        }
        scores = {i: sc for i, sc in scores.items() if i in rows}
        if mode == "hybrid" and rerank:
            shown = set(lexical.paths) - hidden | {r.path for r in extra.values()}
            terms = set(tokenize(query))
            weights = term_weights(lexical.doc_freq(sorted(terms)), len(lexical.ids), terms)
            scores = rerank_scores(query, scores, rows, named_paths(query, shown), weights)
        lex_pos = {i: n for n, i in enumerate(lexical_ranked, 1)}
        vec_pos = {i: n for n, i in enumerate(vector_ranked, 1)}
        hits: list[Hit] = []
        for chunk_id, score in scores.items():
            row = rows[chunk_id]
            hits.append(
                Hit(
                    path=row.path,
                    start_line=row.start_line,
                    end_line=row.end_line,
                    symbol=row.symbol,
                    kind=row.kind,
                    language=row.language,
                    score=score,
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
        overlay: Overlay | None,
        extra: dict[str, StoredChunk],
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
            if len(allowed) <= 500:
                clauses.append({"path": {"$in": sorted(allowed) or ["\0"]}})
        where: dict[str, Any] | None = None
        if len(clauses) == 1:
            where = clauses[0]
        elif clauses:
            where = {"$and": clauses}
        vector = index.embedder.embed([query])[0]
        hidden = overlay.hidden if overlay is not None else set()
        fetch = pool if allowed is None or len(allowed) <= 500 else pool * 4
        found: list[tuple[str, float]] = []
        _, chunks_total, pending = index.catalog.counts()
        if chunks_total > pending:
            shadowed = overlay.shadowed(index.lexical().paths) if overlay is not None else 0
            found = index.vectors.query(vector, fetch + shadowed, where)
        if (allowed is not None and len(allowed) > 500) or hidden:
            rows = index.catalog.chunks_by_id([i for i, _ in found])
            found = [
                (i, sim)
                for i, sim in found
                if i in rows
                and rows[i].path not in hidden
                and (allowed is None or rows[i].path in allowed)
            ]
        if overlay is not None:
            found += [(i, sim) for i, sim in overlay.nearest(vector, pool) if i in extra]
            found.sort(key=lambda item: -item[1])
        return [i for i, _ in found[:pool]]

    def context_sync(
        self, query: str, *, repo: Path, budget_tokens: int, refresh: bool = True
    ) -> Context:
        """Search and format: the context a prompt gets (the index updated first when asked)."""
        if budget_tokens <= 0:
            return Context("", [], [])
        if refresh:
            self.refresh_sync(repo, embed=False)
        hits = self.search_sync(query, repo=repo, k=30)
        return format_context(hits, budget_tokens, self.paths_sync(repo))

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> Context:
        """context_sync in a thread, so the event loop never waits on the index."""
        return await asyncio.to_thread(
            self.context_sync, query, repo=repo, budget_tokens=budget_tokens
        )
