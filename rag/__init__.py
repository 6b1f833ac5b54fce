"""Repository retrieval: chunking, an offline embedder, a ChromaDB vector store, a BM25 index and
a hybrid retriever. Imports nothing from core/ and never textual; the engine uses it as a library.

Entry points: `rag.index.RepoIndex` (build and update one repository's index) and
`rag.retrieve.HybridRetriever` (search and format context for prompts).
"""

from rag.layout import legacy_worktree_indexes, remove_legacy_worktree_indexes

__all__ = ["legacy_worktree_indexes", "remove_legacy_worktree_indexes"]
