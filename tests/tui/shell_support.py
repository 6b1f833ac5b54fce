"""Helpers for the app shell's tests: the real app on a home folder, bounded waits, screen lookups.

`snap_compare` runs an app with `App.run()`, which makes its own event loop, so `ShellApp` opens
its engine in that loop (on Load, before any screen mounts) and closes it when the app ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from textual.command import CommandList
from textual.pilot import Pilot
from textual.screen import Screen

from config.paths import Paths
from core.engine import Engine
from tests.tui.seed import SEED_NOW
from tests.waiting import DEFAULT_TIMEOUT, eventually
from tui.app import OrchestratorApp
from tui.modals.intervention import InterventionModal
from tui.screens.runs import RunsScreen

S = TypeVar("S", bound=Screen[Any])


class ShellApp(OrchestratorApp):
    """The real app on `home` with the seed's fixed clock; the engine opens in the app's loop."""

    def __init__(self, home: Path, *, engine_class: type[Engine] = Engine, **kwargs: Any) -> None:
        kwargs.setdefault("clock", lambda: SEED_NOW)
        # The class stands in until on_load opens the engine (only its signature is read before).
        super().__init__(cast(Engine, engine_class), **kwargs)
        self._home = home
        self._engine_class = engine_class

    async def on_load(self) -> None:
        self.engine = await self._engine_class.open(Paths(self._home))

    async def on_unmount(self) -> None:
        if isinstance(self.engine, Engine):
            await self.engine.close()


async def wait_for(
    pilot: Pilot[Any],
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Let the app run until `condition` holds; fail naming `what` and the screens at the deadline."""
    try:
        await eventually(condition, what=what, timeout=timeout, pause=lambda: pilot.pause(0.02))
    except AssertionError as exc:
        runs = await _stored_runs(pilot.app)
        raise AssertionError(f"{exc}; screens: {pilot.app.screen_stack}; runs: {runs}") from None


async def wait_until(
    pilot: Pilot[Any],
    check: Callable[[], Awaitable[bool]],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Like wait_for, for a condition that reads the store."""
    try:
        await eventually(check, what=what, timeout=timeout, pause=lambda: pilot.pause(0.02))
    except AssertionError as exc:
        runs = await _stored_runs(pilot.app)
        raise AssertionError(f"{exc}; screens: {pilot.app.screen_stack}; runs: {runs}") from None


async def _stored_runs(app: Any) -> list[str]:
    """Each stored run's id, status and error, for a failure message that says what happened."""
    engine = getattr(app, "engine", None)
    if not isinstance(engine, Engine):
        return []
    return [f"{s.run.id} {s.run.status.value}: {s.run.error}" for s in await engine.runs_page()]


def top(app: OrchestratorApp, kind: type[S]) -> S:
    """The screen on top of the stack, checked to be a `kind`."""
    screen = app.screen
    assert isinstance(screen, kind), f"expected {kind.__name__} on top, got {app.screen_stack}"
    return screen


async def wait_for_modal(pilot: Pilot[Any], kind: type[S], *, focus: str | None = None) -> S:
    """Wait until a `kind` screen is on top (and, when given, the widget `focus` has focus)."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, kind), what=kind.__name__)
    if focus is not None:
        await wait_for(
            pilot,
            lambda: app.focused is not None and app.focused.id == focus,
            what=f"focus on #{focus}",
        )
    return cast(S, app.screen)


async def seeded_runs(pilot: Pilot[Any]) -> RunsScreen:
    """Set the seeded home's start-up intervention modal aside and wait for the runs table to
    hold its five runs (tests/tui/seed.py)."""
    await wait_for_modal(pilot, InterventionModal, focus="approve")
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs")
    runs = top(pilot.app, RunsScreen)  # type: ignore[arg-type]
    await wait_for(pilot, lambda: len(runs.summaries) == 5, what="five runs")
    return runs


async def wait_for_palette_hit(pilot: Pilot[Any], text: str) -> None:
    """Wait until the command palette's first hit contains `text`."""

    def offered() -> bool:
        lists = pilot.app.screen.query(CommandList)
        if not lists or lists.first().option_count == 0:
            return False
        return text in str(lists.first().get_option_at_index(0).prompt)

    await wait_for(pilot, offered, what=f"the palette to offer {text!r}")
