"""The analytics section (4): the stored figures, shown as plots, at a small and a large size.

The history is tests/stats_seed.py's: fixed dates ending 2026-11-20 and the app's clock fixed on
that day, so the plots (whose days come from the stored rows) are the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Label
from textual_plotext import PlotextPlot

from config.paths import Paths
from tests.stats_seed import seed_history
from tests.tui.settle import wait_settled
from tests.tui.shell_support import ShellApp, wait_for, wait_for_palette_hit
from tui.screens.analytics import PLOTS, AnalyticsScreen


def app_on(home: Path) -> ShellApp:
    seed_history(Paths(home).db, runs=40, days=14, pending=False)
    return ShellApp(home)


async def analytics(pilot: Pilot[Any], *keys: str) -> AnalyticsScreen:
    """Press 4 (and then `keys`) and wait until the section shows the figures it read."""
    await pilot.press("4", *keys)
    await wait_for(
        pilot, lambda: isinstance(pilot.app.screen, AnalyticsScreen), what="the analytics section"
    )
    screen = pilot.app.screen
    assert isinstance(screen, AnalyticsScreen)
    await wait_for(pilot, lambda: screen.figures is not None, what="the figures read")
    return screen


def shot(*keys: str) -> Any:
    async def before(pilot: Pilot[Any]) -> None:
        await analytics(pilot)
        if keys:
            await pilot.press(*keys)
        await wait_settled(pilot)

    return before


def test_analytics_small(snap_compare: Any, home: Path) -> None:
    assert snap_compare(app_on(home), run_before=shot(), terminal_size=(80, 24))


def test_analytics_small_next_plot(snap_compare: Any, home: Path) -> None:
    assert snap_compare(app_on(home), run_before=shot("n", "n"), terminal_size=(80, 24))


def test_analytics_large(snap_compare: Any, home: Path) -> None:
    assert snap_compare(app_on(home), run_before=shot(), terminal_size=(160, 45))


async def test_the_section_shows_the_stored_figures(home: Path) -> None:
    app = app_on(home)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await analytics(pilot)
        stored = await app.engine.stats()
        totals = stored["totals"]
        line = str(screen.query_one("#totals", Label).render())
        assert f"{totals['runs']} runs" in line
        assert f"{totals['tokens']:,} tokens" in line and f"${totals['cost_usd']:.2f}" in line
        runs = screen.plotted["runs"]
        assert sum(sum(v) for k, v in runs.items() if k != "labels") == totals["runs"]
        assert runs["labels"][0] == "11-07" and runs["labels"][-1] == "11-20"
        findings = screen.plotted["findings"]
        assert sum(findings["major"]) == totals["findings_by_severity"]["major"]
        checks = screen.plotted["checks"]
        assert checks["labels"][-1] == stored["failing_checks"][0]["tool"]
        for name in PLOTS:
            assert screen.query_one(f"#{name}", PlotextPlot).size.height == 13  # and its legend

        cost = screen.plotted["cost"]
        by_model: dict[str, float] = {}
        for u in stored["usage_per_day"]:
            by_model[u["model"]] = by_model.get(u["model"], 0.0) + u["cost_usd"]
        assert {k: round(sum(v), 6) for k, v in cost.items() if k != "labels"} == {
            m: round(c, 6) for m, c in by_model.items() if c
        }
        await pilot.press("t")  # tokens by role instead
        await wait_for(pilot, lambda: "planner" in screen.plotted["cost"], what="tokens by role")
        tokens = screen.plotted["cost"]
        assert sum(sum(tokens[role]) for role in ("planner", "executor")) == totals["tokens"]

        await pilot.press("s")  # the last 30 days from the app's clock: the whole history
        await wait_for(
            pilot,
            lambda: (
                screen.figures is not None and screen.figures["filters"]["since"] == "2026-10-22"
            ),
            what="30 days",
        )
        await pilot.press("s")  # the last 7 days: 2026-11-14 to 2026-11-20
        await wait_for(
            pilot,
            lambda: (
                screen.figures is not None and screen.figures["filters"]["since"] == "2026-11-14"
            ),
            what="the figures of the last 7 days",
        )
        week = await app.engine.stats(since="2026-11-14")
        assert screen.figures["totals"] == week["totals"]
        assert screen.plotted["runs"]["labels"][0] == "11-14"
        assert "since 2026-11-14" in str(screen.query_one("#period", Label).render())


async def test_an_empty_home_says_how_to_start(home: Path) -> None:
    app = ShellApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await analytics(pilot)
        assert screen.has_class("empty")
        empty = screen.query_one("#empty", Label)
        assert empty.display and "Press 3 to start one" in str(empty.render())
        assert not screen.query_one("#plots").display


async def test_the_palette_opens_the_section(home: Path) -> None:
    app = app_on(home)
    async with app.run_test(size=(120, 34)) as pilot:
        await pilot.press("ctrl+p", *"Analytics")
        await wait_for_palette_hit(pilot, "Analytics")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: isinstance(app.screen, AnalyticsScreen), what="the analytics section"
        )
