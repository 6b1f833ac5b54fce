"""The engine's side of repository retrieval: builds rag's index and retriever from configuration.

`hybrid_retriever` gives the process's warm retriever for a home folder and configuration (the
run's IndexedRetriever wraps it); `index_repository` and `search_repository` back the `index` and
`search` commands. Every call into rag blocks (chromadb, onnxruntime, SQLite): run them in a thread.
"""

from __future__ import annotations

import difflib
import threading
from pathlib import Path

from config.catalog import ModelsCatalog
from config.paths import Paths
from config.schema import OrchestratorConfig
from core.error_map import as_orchestrator_error
from core.errors import InputError
from rag.embedders import EmbedderSpec
from rag.errors import RagError
from rag.index import IndexSettings, IndexStats, Progress
from rag.languages import known_languages
from rag.layout import prune_indexes
from rag.retrieve import Hit, HybridRetriever

_retrievers: dict[tuple[str, EmbedderSpec, tuple[str, ...], int], HybridRetriever] = {}
_retrievers_lock = threading.Lock()


def embedder_spec(config: OrchestratorConfig, catalog: ModelsCatalog) -> EmbedderSpec:
    """The embedder the `embedder` role names (models.yaml, or models.embedder in config)."""
    model = catalog.resolve("embedder", config.models.embedder)
    return EmbedderSpec(
        provider=model.provider,
        model=model.tag,
        host=config.llm.host,
        timeout_seconds=config.llm.timeout_seconds,
    )


def index_settings(config: OrchestratorConfig) -> IndexSettings:
    return IndexSettings(exclude=list(config.rag.exclude), max_file_bytes=config.rag.max_file_bytes)


def hybrid_retriever(
    paths: Paths, config: OrchestratorConfig, catalog: ModelsCatalog
) -> HybridRetriever:
    """The process's retriever for a home folder, embedder and file rules (kept warm)."""
    spec = embedder_spec(config, catalog)
    settings = index_settings(config)
    key = (str(paths.indexes), spec, tuple(settings.exclude), settings.max_file_bytes)
    with _retrievers_lock:
        if key not in _retrievers:
            paths.indexes.mkdir(parents=True, exist_ok=True)
            _retrievers[key] = HybridRetriever(paths.indexes, spec, settings)
        return _retrievers[key]


def index_repository(
    hybrid: HybridRetriever,
    repo: Path,
    *,
    full: bool,
    embed: bool = True,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> IndexStats:
    """`orchestrator index`: bring a repository's index up to date (blocking); indexes of
    repositories or worktrees that no longer exist are deleted first."""
    try:
        prune_indexes(hybrid.indexes)
        return hybrid.refresh_sync(repo, full=full, embed=embed, progress=progress, stop=stop)
    except RagError as exc:
        raise as_orchestrator_error(exc) from exc


def search_repository(
    hybrid: HybridRetriever,
    query: str,
    repo: Path,
    *,
    k: int,
    path_glob: str | None,
    language: str | None,
) -> list[Hit]:
    """`orchestrator search`: the index is refreshed lexically first, then searched (blocking)."""
    try:
        hybrid.refresh_sync(repo, embed=False)
        known = known_languages() | set(hybrid.index_for(repo).lexical().languages)
        if language is not None and language not in known:
            close = difflib.get_close_matches(language, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"--lang {language!r} is not a language the index knows{hint} "
                f"(known: {', '.join(sorted(known))})"
            )
        return hybrid.search_sync(query, repo=repo, k=k, path_glob=path_glob, language=language)
    except RagError as exc:
        raise as_orchestrator_error(exc) from exc
