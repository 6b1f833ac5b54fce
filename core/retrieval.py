"""Context retrieval for prompts: the Retriever protocol, the indexed retriever built on rag/,
and the no-op retriever used when `rag.enabled` is off."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rag.format import Context
    from rag.index import IndexStats
    from rag.retrieve import HybridRetriever

log = logging.getLogger(__name__)

INLINE_EMBED_CHUNKS = 64  # about two seconds of MiniLM on two busy cores


@dataclass(frozen=True)
class RetrievedContext:
    """Context text ready for a prompt, the repository files it draws on (best first), and what
    it shows (path, lines, symbol, score, lexical_only per chunk) for storing with the prompt."""

    text: str
    files: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)


class Retriever(Protocol):
    """Finds the parts of a repository relevant to a query, within a token budget."""

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> RetrievedContext: ...


class IndexedRetriever:
    """The retriever of runs with `rag.enabled`: hybrid BM25 + vector search over rag's
    incremental index of the repository (or worktree) it is asked about.

    Each retrieve brings that index's lexical part up to date first (seconds, incremental) and
    starts filling in missing vectors in the background; until they land, those chunks are found
    lexically and reported `lexical_only`. One embedding job runs at a time per process.
    """

    def __init__(self, hybrid: HybridRetriever) -> None:
        self.hybrid = hybrid
        self._embedding: dict[Path, asyncio.Task[None]] = {}
        self._embed_lock = asyncio.Lock()
        # Files prompts drew on, per index root: a running background job reads this list before
        # each batch, so files a later prompt needs get their vectors next.
        self._first: dict[Path, list[str]] = {}

    async def prepare(self, repo: Path) -> IndexStats:
        """Bring the repository's index up to date before planning (vectors in the background);
        indexes of worktrees that were removed since are deleted first."""
        from rag.layout import prune_indexes

        await asyncio.to_thread(self.hybrid.forget_missing)
        await asyncio.to_thread(prune_indexes, self.hybrid.indexes)
        stats = await asyncio.to_thread(self.hybrid.refresh_sync, repo, embed=False)
        if await self._fill_in(Path(stats.root), stats.pending):
            stats.pending = 0
        return stats

    async def _fill_in(self, root: Path, pending: int, first: list[str] | None = None) -> bool:
        """A few missing vectors (a small repository, a phase's changed files) are embedded
        right away; more are left to a background job so the prompt does not wait, which embeds
        the files in `first` (those the task's search found) before the rest."""
        from rag.errors import RagError

        if 0 < pending <= INLINE_EMBED_CHUNKS:
            try:
                await asyncio.to_thread(self.hybrid.embed_sync, root)
                return True
            except RagError as exc:
                log.warning("embedding the index of %s failed: %s", root, exc)
        wanted = self._first.setdefault(root, [])
        wanted[:0] = [f for f in first or [] if f not in wanted]  # the newest prompt's files first
        if pending and (root not in self._embedding or self._embedding[root].done()):
            self._embedding[root] = asyncio.create_task(self._embed(root, wanted))
        return False

    async def _embed(self, root: Path, first: list[str]) -> None:
        from rag.errors import RagError

        stop = threading.Event()
        async with self._embed_lock:  # the model runs once at a time; later jobs hit the cache
            try:
                await asyncio.to_thread(self.hybrid.embed_sync, root, stop=stop, first=first)
            except RagError as exc:  # search keeps working lexically
                log.warning("embedding the index of %s failed: %s", root, exc)
            except asyncio.CancelledError:  # the process is ending: stop after this batch
                stop.set()
                raise

    async def wait_embedded(self) -> None:
        """Wait until background embedding has finished (commands and tests use it)."""
        while any(not t.done() for t in self._embedding.values()):
            await asyncio.gather(*self._embedding.values(), return_exceptions=True)

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> RetrievedContext:
        from rag.errors import NotARepositoryError

        if budget_tokens <= 0:
            return RetrievedContext(text="")

        def refresh_and_search() -> tuple[IndexStats, Context]:
            stats = self.hybrid.refresh_sync(repo, embed=False)
            context = self.hybrid.context_sync(
                query, repo=repo, budget_tokens=budget_tokens, refresh=False
            )
            return stats, context

        try:  # one hop to a thread: under load each hop costs milliseconds
            stats, context = await asyncio.to_thread(refresh_and_search)
        except NotARepositoryError:
            return RetrievedContext(text="")
        if stats.pending:  # the files this prompt drew on get their vectors first
            await self._fill_in(Path(stats.root), stats.pending, context.files)
        return RetrievedContext(text=context.text, files=context.files, sources=context.sources())


class NoRetrieval:
    """The retriever used when `rag.enabled` is off: prompts get no repository context."""

    async def retrieve(self, query: str, *, repo: Path, budget_tokens: int) -> RetrievedContext:
        return RetrievedContext(text="", files=[])
