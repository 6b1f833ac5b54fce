"""Ranking: code above prose for code questions, docs still found for doc questions, names
written as code find the symbol that defines them."""

from __future__ import annotations

from pathlib import Path

from rag.embedders import EmbedderSpec
from rag.retrieve import HybridRetriever, query_identifiers
from tests.conftest import make_repo

FILES = {
    "docs/pooling.md": "# Connection pooling\n\nThe pool recycles connections after a timeout.\n"
    "Set the recycle timeout to recycle stale connections in the pool; connections older than\n"
    "the timeout are recycled when the pool hands them out.\n",
    "db/pool.py": "class QueuePool:\n    def recycle(self, connection, timeout):\n"
    "        if connection.age > timeout:\n            connection.close()\n\n"
    "    def checkout(self):\n        return self.queue.get()\n",
    "db/engine.py": "def create_engine(url):\n    return Engine(url)\n",
    "db/misc.py": "def helper():\n    return 'pool'\n",
}


def files(retriever: HybridRetriever, query: str, repo: Path) -> list[str]:
    hits = retriever.search_sync(query, repo=repo, k=10)
    return list(dict.fromkeys(h.path for h in hits))


def test_code_comes_before_prose_unless_the_question_is_about_docs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    retriever = HybridRetriever(tmp_path / "indexes", EmbedderSpec("hash", "256"))
    retriever.refresh_sync(repo)
    assert files(retriever, "recycle stale connections in the pool after a timeout", repo)[0] == (
        "db/pool.py"
    )
    assert files(retriever, "documentation on connection pooling", repo)[0] == "docs/pooling.md"
    assert files(retriever, "create_engine", repo)[0] == "db/engine.py"
    # Without the reranking the prose page wins the code question: the stage is measurable.
    plain = retriever.search_sync(
        "recycle stale connections in the pool after a timeout", repo=repo, k=3, rerank=False
    )
    assert plain[0].path == "docs/pooling.md"


def test_names_written_as_code_are_recognised() -> None:
    assert query_identifiers("where is create_engine called") == {"create_engine"}
    assert query_identifiers("QueuePool limit") == {"queuepool"}
    assert query_identifiers("session.flush order") == {"flush"}
    assert query_identifiers("how are redirects followed") == set()
    assert query_identifiers("solveset") == {"solveset"}
