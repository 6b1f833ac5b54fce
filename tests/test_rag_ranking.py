"""Ranking: code above prose for code questions, docs still found for doc questions, names
written as code find the symbol that defines them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.embedders import EmbedderSpec
from rag.lexical import LexicalIndex
from rag.rank import file_ranking, holds_phrase, quoted_phrase, term_weights, weighted_share
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


MESSAGES = {
    "app/session.py": "".join(
        f"def step_{n}(session):\n    session.state = 'step {n}'\n    return session\n\n\n"
        for n in range(40)
    )
    + "def flush(session):\n    if session.failed:\n        raise SessionError(\n"
    '            "This %stransaction has been rolled "\n'
    "            \"back due to a previous exception\" % ('nested ' if session.nested else '')\n"
    "        )\n",
    "tests/test_session.py": "".join(
        f"def test_rollback_{n}(session):\n    with raises(SessionError, match="
        f"'transaction has been rolled back due to a previous exception'):\n"
        f"        session.flush()\n\n\n"
        for n in range(3)
    ),
    "app/recovery.py": "def recover(transaction, exception):\n"
    '    """After an exception the transaction is rolled back; a previous transaction that was\n'
    "    rolled back due to an exception is rolled back again: back to the previous state, due\n"
    '    to the previous exception."""\n'
    "    transaction.rollback()  # rolled back due to the exception\n",
    "docs/errors.md": "# Errors\n\nThe transaction has been rolled back due to a previous "
    "exception: roll back the transaction, then go on.\n",
}


def test_a_quoted_message_finds_the_code_that_raises_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", MESSAGES)
    retriever = HybridRetriever(tmp_path / "indexes", EmbedderSpec("hash", "256"))
    retriever.refresh_sync(repo)
    query = "transaction has been rolled back due to a previous exception"
    assert files(retriever, query, repo)[0] == "app/session.py"
    # Without the reranking a page or a test that quotes the message word for word wins.
    plain = retriever.search_sync(query, repo=repo, k=5, rerank=False)
    assert plain[0].path != "app/session.py"


def test_a_message_the_code_builds_from_literals_and_placeholders_is_held() -> None:
    code = (
        "raise PendingRollbackError(\n"
        '    "Can\'t reconnect until invalid %stransaction is rolled "\n'
        '    \'back.  Please rollback() fully\' % ("savepoint " if x else "")\n'
    )
    assert holds_phrase(code, "can't reconnect until invalid transaction is rolled back")
    assert holds_phrase(
        "f'Unused \"type: ignore{codes}\" comment'", 'unused "type: ignore" comment'
    )
    assert not holds_phrase(code, "reconnect until the transaction is rolled back")
    assert quoted_phrase("Missing  return\nStatement") == "missing return statement"
    assert quoted_phrase("create_engine") is None


def test_files_rank_by_their_best_chunks_together() -> None:
    ids = ["a1", "a2", "a3", "a4", "b1", "c1"]
    paths = ["a.py", "a.py", "a.py", "a.py", "b.py", "c.py"]
    scores = np.array([2.0, 1.5, 1.5, 1.5, 4.5, 0.0])
    files = LexicalIndex(None, ids, paths, ["python"] * len(ids)).file_codes
    # a.py: its three best chunks (2.0 + 1.5 + 1.5) beat b.py's one better chunk; c.py matches
    # nothing; each file is given by its best chunk.
    assert file_ranking(ids, files, scores, 10) == ["a1", "b1"]
    assert file_ranking(ids, files, scores, 1) == ["a1"]
    assert file_ranking(ids, files, scores, 10, [("o1", "o.py", 9.0)]) == ["o1", "a1", "b1"]
    assert file_ranking(ids, files, None, 10) == []


def test_rare_words_weigh_more() -> None:
    weights = term_weights({"type": 900, "mro": 3}, 1000, {"type", "mro", "linearize"})
    assert weights["linearize"] > weights["mro"] > weights["type"] > 0
    assert weighted_share({"mro"}, weights) > weighted_share({"type"}, weights)
