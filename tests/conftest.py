"""Shared fixtures: an isolated home folder, git repositories made in the test, and a fake Ollama."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fakes.ollama_server import fake_ollama  # noqa: F401  (fixture)

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def git(cwd: Path, *args: str) -> str:
    """Run git in cwd and return its stdout, failing the test on error."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository at path on branch main with one commit holding files."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    for rel, text in (files or {"README.md": "hello\n"}).items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ORCHESTRATOR_HOME in tmp_path, so nothing touches the user's real folders."""
    folder = tmp_path / "home"
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(folder))
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    for key in list(os.environ):
        if key.startswith("ORCHESTRATOR__"):
            monkeypatch.delenv(key)
    # Runs index their repository; tests that are not about retrieval quality use the instant
    # embedder (the RAG tests choose the shipped MiniLM explicitly).
    monkeypatch.setenv("ORCHESTRATOR__MODELS__EMBEDDER", "hashing-256")
    monkeypatch.setenv("ORCHESTRATOR_SEARCH_DAEMON", "off")  # no daemon outlives the test
    return folder
