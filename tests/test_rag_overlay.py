"""One index per repository: its worktrees search it through an overlay of their own changes,
nothing is stored per worktree, and no worktree sees another's changes."""

from __future__ import annotations

from pathlib import Path

from rag.embedders import EmbedderSpec
from rag.retrieve import HybridRetriever
from tests.conftest import git, make_repo

FILES = {
    "shop/prices.py": "def apply_discount(price, percent):\n    return price * (1 - percent / 100)\n",
    "shop/cart.py": "def add_item(cart, item):\n    cart.append(item)\n",
    "README.md": "# Shop\n",
}


def paths(retriever: HybridRetriever, query: str, repo: Path, mode: str = "hybrid") -> list[str]:
    return [h.path for h in retriever.search_sync(query, repo=repo, k=10, mode=mode)]


def test_worktrees_share_the_repository_index_and_never_see_each_other(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop", FILES)
    first, second = tmp_path / "run-a", tmp_path / "run-b"
    git(repo, "worktree", "add", "-q", "-b", "run-a", str(first))
    git(repo, "worktree", "add", "-q", "-b", "run-b", str(second))
    (first / "shop/frobnicate.py").write_text("def frobnicate_widgets(widgets):\n    return 1\n")
    git(first, "add", "-A")
    git(first, "commit", "-q", "-m", "phase 1 of run a")
    (second / "shop/cart.py").unlink()
    indexes = tmp_path / "home" / "indexes"
    retriever = HybridRetriever(indexes, EmbedderSpec("hash", "256"))
    retriever.refresh_sync(repo)
    for tree in (first, second):
        retriever.refresh_sync(tree)

    for mode in ("lexical", "vector"):
        assert paths(retriever, "frobnicate widgets", first, mode)[0] == "shop/frobnicate.py"
        assert "shop/frobnicate.py" not in paths(retriever, "frobnicate widgets", second, mode)
        assert "shop/frobnicate.py" not in paths(retriever, "frobnicate widgets", repo, mode)
        # The second run deleted cart.py: it is gone there, and still there for the others.
        assert "shop/cart.py" not in paths(retriever, "add item to cart", second, mode)
        assert paths(retriever, "add item to cart", first, mode)[0] == "shop/cart.py"
    hits = retriever.search_sync("frobnicate widgets", repo=first, k=1)
    assert not hits[0].lexical_only  # the changed file was embedded along the way
    assert "shop/cart.py" not in retriever.paths_sync(second)
    assert "shop/frobnicate.py" in retriever.paths_sync(first)

    # One index and one vector collection for the repository; nothing per worktree.
    assert len(list(indexes.glob("*/*/catalog.sqlite"))) == 1
    collections = retriever.index_for(repo).vectors.client.list_collections()
    assert len(collections) == 1
    # An edit in a worktree after the first search is seen by the next one.
    (second / "shop/prices.py").write_text("def apply_coupon(price, code):\n    return price\n")
    retriever.refresh_sync(second)
    assert paths(retriever, "apply coupon", second)[0] == "shop/prices.py"
    assert "apply_discount" not in retriever.search_sync("apply discount", repo=second, k=1)[0].text


def test_clean_can_find_and_remove_the_per_worktree_indexes_older_versions_left(
    tmp_path: Path,
) -> None:
    import rag
    from rag.index import RepoIndex

    repo = make_repo(tmp_path / "shop", FILES)
    tree = tmp_path / "run-a"
    git(repo, "worktree", "add", "-q", "-b", "run-a", str(tree))
    indexes = tmp_path / "home" / "indexes"
    spec = EmbedderSpec("hash", "256")
    kept, legacy = RepoIndex(repo, indexes, spec), RepoIndex(tree, indexes, spec)  # as before
    kept.update()
    legacy.update()
    legacy.close()
    assert rag.legacy_worktree_indexes(indexes) == [legacy.folder]
    assert rag.remove_legacy_worktree_indexes(indexes) == [str(tree.resolve())]
    assert not legacy.folder.exists() and kept.folder.exists()
    assert [c.name for c in kept.vectors.client.list_collections()] == [kept.vectors.name]
    assert rag.legacy_worktree_indexes(indexes) == []


def test_worktree_roots_read_from_a_linked_worktree_agree_with_git(tmp_path: Path) -> None:
    """A phase worktree's roots are read from its .git file without starting git; the answer is
    git's, through a symlinked path too, and git answers for what that reading does not cover."""
    from rag.overlay import worktree_roots

    repo = make_repo(tmp_path / "shop", FILES)
    tree = tmp_path / "trees" / "phase-1"
    git(repo, "worktree", "add", "-q", "-b", "phase-1", str(tree))
    (tmp_path / "via-link").symlink_to(tree)
    for asked in (tree, tmp_path / "via-link", tree / "shop", repo, repo / "shop"):
        top, git_dir, common = git(
            asked, "rev-parse", "--show-toplevel", "--git-dir", "--git-common-dir"
        ).splitlines()
        linked = Path(asked, git_dir).resolve() != Path(asked, common).resolve()
        assert worktree_roots(asked) == (Path(top).resolve(), repo.resolve() if linked else None)
