"""Shared fixtures: an isolated home folder, git repositories made in the test, and a fake Ollama."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import precompile
from tests.fakes.ollama_server import fake_ollama  # noqa: F401  (fixture)
from tests.pg_support import PgServer, migrated_template, missing_reason, server_for_session

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once, in the process that starts any xdist workers
        precompile()


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


# -- PostgreSQL: one server per test session, a fresh database per test ------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL 15 server of this session (skipped, saying why, when it is not installed)."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    yield from server_for_session()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A database migrated once, copied by `pg_url` for each test (CREATE DATABASE ... TEMPLATE)."""
    return migrated_template(pg_server)


@pytest.fixture
def pg_url(pg_server: PgServer, pg_template: str) -> Iterator[str]:
    """The URL (password included) of a fresh, migrated, empty PostgreSQL database."""
    name = pg_server.fresh_database(pg_template)
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str | None]:
    """Where a store lives, for tests run on both backends: (SQLite path, PostgreSQL URL or None)."""
    if request.param == "sqlite":
        return tmp_path / "state.db", None
    return tmp_path / "state.db", request.getfixturevalue("pg_url")
