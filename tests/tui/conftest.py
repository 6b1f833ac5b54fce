"""Fixtures for TUI tests: a seeded home folder, an engine on it, and local time fixed to UTC."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from config.paths import Paths
from core.engine import Engine
from tests.tui.seed import Seeded, seed


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Timestamps render in local time; pin it to UTC so screens are the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def seeded(home: Path) -> Seeded:
    """The realistic seed data in the test's home folder."""
    return seed(Paths(home).db)


@pytest.fixture
async def engine(home: Path) -> AsyncIterator[Engine]:
    """An engine on the test's home folder (seed it first with the `seeded` fixture if wanted)."""
    eng = await Engine.open(Paths(home))
    try:
        yield eng
    finally:
        await eng.close()
