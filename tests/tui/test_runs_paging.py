"""The engine queries behind the runs table: one page, filtered and sorted in SQL, and its count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.paths import Paths
from core.engine import Engine
from core.errors import InputError
from tests.tui.seed import (
    CANCELLED_RUN,
    COMPLETED_RUN,
    FAILED_RUN,
    INTERRUPTED_RUN,
    MAIN_RUN,
    seed,
)


@pytest.fixture
async def engine(home: Path) -> AsyncIterator[Engine]:
    seed(Paths(home).db, quick_runs=250)
    eng = await Engine.open(Paths(home))
    try:
        yield eng
    finally:
        await eng.close()


async def test_pages_cover_every_run_once_newest_first(engine: Engine) -> None:
    total = await engine.count_runs()
    assert total == 255
    seen: list[str] = []
    for offset in range(0, total, 100):
        seen += [s.run.id for s in await engine.runs_page(limit=100, offset=offset)]
    assert len(seen) == len(set(seen)) == total
    assert seen[0] == MAIN_RUN and seen[-1] == "rq00000000"


async def test_filter_matches_id_task_repository_and_status_as_plain_text(engine: Engine) -> None:
    assert [s.run.id for s in await engine.runs_page(query="SETTINGS")] == [FAILED_RUN]
    assert {s.run.id for s in await engine.runs_page(query="interrupted")} == {INTERRUPTED_RUN}
    assert await engine.count_runs(query="r5eed0") == 5
    assert await engine.count_runs(query="repo3") == len(range(3, 250, 7))
    # % and _ are plain characters, not LIKE wildcards.
    assert await engine.count_runs(query="%") == 0
    assert await engine.count_runs(query="_") == 0
    assert await engine.count_runs(status="completed") == 251
    assert await engine.count_runs(query="inventory", status="cancelled") == 1


@pytest.mark.parametrize(
    ("sort", "descending", "first"),
    [
        ("started", True, MAIN_RUN),
        ("started", False, "rq00000000"),
        ("task", False, COMPLETED_RUN),  # "Add a health check endpoint"
        ("status", False, CANCELLED_RUN),
        ("findings", True, MAIN_RUN),  # 1 major, 1 medium, 2 minor open
        ("cost", True, MAIN_RUN),  # the most tokens
        ("phases", True, COMPLETED_RUN),  # 3 of 3 done
    ],
)
async def test_sort_keys(engine: Engine, sort: str, descending: bool, first: str) -> None:
    [top] = await engine.runs_page(sort=sort, descending=descending, limit=1)
    assert top.run.id == first


async def test_summaries_carry_progress_findings_and_tokens(engine: Engine) -> None:
    [main] = await engine.runs_page(query=MAIN_RUN)
    assert (main.phases_completed, main.phases_total) == (1, 5)
    assert main.findings == {"major": 1, "medium": 1, "minor": 2}
    assert main.tokens == 1840 + 612 + 3 * (3120 + 945)


async def test_an_unknown_sort_says_which_exist(engine: Engine) -> None:
    with pytest.raises(InputError, match="unknown sort 'size'; use one of started, task"):
        await engine.runs_page(sort="size")
