"""Hybrid retrieval: fusion, filters, reranking and formatting within a budget (the `index` and
`search` commands are tested with the search daemon, tests/test_search_daemon.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.embedders import EmbedderSpec, HashingEmbedder
from rag.format import Hit, format_context, group_by_file
from rag.index import IndexSettings
from rag.retrieve import HybridRetriever, fuse, is_test_path
from tests.conftest import make_repo

SPEC = EmbedderSpec("hash", "256")

FILES = {
    "inventory/store.py": (
        "class InventoryStore:\n"
        "    def add_item(self, sku, quantity):\n"
        "        self.items[sku] = self.items.get(sku, 0) + quantity\n\n"
        "    def export_csv(self, path):\n"
        "        with open(path, 'w') as handle:\n"
        "            for sku, quantity in self.items.items():\n"
        "                handle.write(f'{sku},{quantity}\\n')\n"
    ),
    "inventory/report.py": "def stock_report(store):\n    return sorted(store.items)\n",
    "web/export.ts": "export function exportCsv(rows: string[]): string { return rows.join('\\n') }\n",
    "tests/test_store.py": "def test_export_csv(tmp_path):\n    InventoryStore().export_csv(tmp_path)\n",
    "docs/guide.md": "# Export\nUse export_csv to write a CSV file.\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "inv", FILES)


@pytest.fixture
def retriever(tmp_path: Path) -> HybridRetriever:
    return HybridRetriever(
        tmp_path / "indexes", SPEC, IndexSettings(exclude=[".git/"]), embedder=HashingEmbedder()
    )


def test_reciprocal_rank_fusion() -> None:
    scores = fuse([["a", "b", "c"], ["c", "d"]], k=60)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["b"] == scores["d"] == pytest.approx(1 / 62)
    assert max(scores, key=lambda i: scores[i]) == "c"  # in both lists: ranks above either top


def test_hybrid_search_ranks_the_defining_chunk_first(
    repo: Path, retriever: HybridRetriever
) -> None:
    retriever.refresh_sync(repo)
    hits = retriever.search_sync("write the inventory to a CSV file", repo=repo, k=5)
    # The class is short, so it is one chunk (long classes are split into methods).
    assert (hits[0].path, hits[0].symbol, hits[0].start_line, hits[0].end_line) == (
        "inventory/store.py",
        "InventoryStore",
        1,
        8,
    )
    assert hits[0].lexical_rank is not None and hits[0].vector_rank is not None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    test_hit = next(h for h in hits if h.path == "tests/test_store.py")
    assert hits.index(test_hit) > 0  # tests weigh less unless the query is about tests
    about_tests = retriever.search_sync("tests for export csv", repo=repo, k=5)
    assert about_tests[0].path == "tests/test_store.py"


def test_filters_by_language_and_path_glob(repo: Path, retriever: HybridRetriever) -> None:
    retriever.refresh_sync(repo)
    ts = retriever.search_sync("export csv", repo=repo, language="typescript")
    assert [h.path for h in ts] == ["web/export.ts"]
    under = retriever.search_sync("export csv", repo=repo, path_glob="inventory/**")
    assert under and {h.path for h in under} <= {"inventory/store.py", "inventory/report.py"}
    named = retriever.search_sync("export csv", repo=repo, path_glob="*.md")
    assert [h.path for h in named] == ["docs/guide.md"]
    assert retriever.search_sync("export csv", repo=repo, path_glob="nothing/**") == []


def test_a_file_named_in_the_task_ranks_first(repo: Path, retriever: HybridRetriever) -> None:
    retriever.refresh_sync(repo)
    hits = retriever.search_sync("export csv; also touch report.py", repo=repo, k=3)
    assert hits[0].path == "inventory/report.py"


def _hit(path: str, start: int, lines: int, symbol: str | None = None) -> Hit:
    text = "\n".join(f"{path}:{n}" + " x" * 20 for n in range(start, start + lines))
    return Hit(path, start, start + lines - 1, symbol, "function", "python", 1.0, False, text)


def test_formatting_groups_by_file_merges_ranges_and_keeps_the_budget() -> None:
    hits = [
        _hit("a.py", 10, 5, "alpha"),
        _hit("b.py", 1, 30, "beta"),
        _hit("a.py", 13, 6, "alpha2"),  # overlaps the first a.py hit
        _hit("c.py", 100, 3),
    ]
    assert list(group_by_file(hits)) == ["a.py", "b.py", "c.py"]
    wide = format_context(hits, 10_000, paths=["a.py", "b.py", "c.py"])
    assert wide.text.startswith("Repository files:\na.py\nb.py\nc.py\n\n### a.py (lines 10-18)")
    assert "lines 10-18: alpha, alpha2\n```\na.py:10" in wide.text
    assert wide.text.count("a.py:13") == 1  # overlapping lines shown once
    assert "### c.py (lines 100-102)\nlines 100-102\n```" in wide.text  # a window has no symbol
    assert wide.files == ["a.py", "b.py", "c.py"]
    for budget in (60, 150, 300, 600):
        ctx = format_context(hits, budget, paths=["a.py", "b.py", "c.py"])
        assert len(ctx.text) <= budget * 4
        for hit in ctx.hits:
            assert f"### {hit.path} (lines " in ctx.text
    small = format_context(hits, 150)
    assert "b.py" not in small.files and "a.py" in small.files  # b.py is too long; others fit
    tiny = format_context([_hit("big.py", 1, 400)], 100)
    assert tiny.hits and tiny.hits[0].end_line < 400 and len(tiny.text) <= 400
    assert format_context(hits, 0).text == ""


def test_test_paths() -> None:
    for path in ("tests/test_a.py", "pkg/tests/x.py", "test_a.py", "x_test.go", "ui/a.spec.ts"):
        assert is_test_path(path)
    for path in ("test-data/unit/check.test", "pkg/testdata/a.json", "test_data/b.txt"):
        assert is_test_path(path)
    for path in ("src/testing_utils.py", "contest.py", "latest/app.py", "data/test.md"):
        assert not is_test_path(path)
