"""RepoFilesRetriever on a real git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.retrieval import RepoFilesRetriever, split_words


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {
        "src/billing/invoice_total.py": "def invoice_total(lines):\n    return sum(l.amount for l in lines)\n",
        "src/billing/tax.py": "TAX_RATE = 0.2\n\ndef apply_tax(amount):\n    return amount * (1 + TAX_RATE)\n",
        "src/users/profile.py": "class UserProfile:\n    name: str\n",
        "docs/guide.md": "# Guide\nHow invoices and taxes work.\n" + "filler text\n" * 200,
        "vendor/lib.js": "function invoiceTotal() {}\n",
        "assets/logo.png": "PNG\0binary invoice",
        "README.md": "# Shop\n",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(
        tmp_path,
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-q",
        "-m",
        "init",
    )
    (tmp_path / "untracked_invoice_notes.py").write_text("# invoice notes\n")
    return tmp_path


def test_split_words() -> None:
    assert split_words("UserProfile.get_name src/HTTPServer42") == [
        "user",
        "profile",
        "get",
        "name",
        "src",
        "http",
        "server",
        "42",
    ]


async def test_named_file_ranks_first_and_excludes_apply(repo: Path) -> None:
    retriever = RepoFilesRetriever(exclude=["vendor/**", "*.md"], max_file_bytes=10_000)
    ctx = await retriever.retrieve(
        "Round the invoice total in tax.py to cents", repo=repo, budget_tokens=2000
    )
    assert ctx.files[0] == "src/billing/tax.py"
    assert "src/billing/invoice_total.py" in ctx.files
    assert "src/users/profile.py" not in ctx.files  # shares no word with the query
    assert ctx.text.startswith("Repository files:\n")
    assert "untracked_invoice_notes.py" in ctx.text
    assert "vendor/lib.js" not in ctx.text and "README.md" not in ctx.text
    assert "assets/logo.png" not in ctx.files  # binary
    assert "### src/billing/tax.py\n```\nTAX_RATE = 0.2\n" in ctx.text
    assert ctx.text.index("### src/billing/tax.py") < ctx.text.index(
        "### src/billing/invoice_total.py"
    )


async def test_budget_is_respected(repo: Path) -> None:
    retriever = RepoFilesRetriever(exclude=[], max_file_bytes=100_000)
    wide = await retriever.retrieve("invoice tax guide", repo=repo, budget_tokens=5000)
    assert "docs/guide.md" in wide.files
    for budget in (30, 60, 120):
        ctx = await retriever.retrieve("invoice tax guide", repo=repo, budget_tokens=budget)
        assert len(ctx.text) <= budget * 4
        assert "docs/guide.md" not in ctx.files  # about 2,500 characters: never fits
        for rel in ctx.files:
            assert f"### {rel}\n" in ctx.text
    empty = await retriever.retrieve("invoice", repo=repo, budget_tokens=0)
    assert empty.text == "" and empty.files == []


async def test_oversized_files_are_skipped_and_non_repo_is_empty(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ctx = await RepoFilesRetriever(max_file_bytes=50).retrieve(
        "guide invoices", repo=repo, budget_tokens=5000
    )
    assert "docs/guide.md" not in ctx.files
    plain = tmp_path_factory.mktemp("plain")
    ctx = await RepoFilesRetriever().retrieve("anything", repo=plain, budget_tokens=100)
    assert ctx.text == "" and ctx.files == []
