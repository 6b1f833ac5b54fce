"""Helpers for the run view's tests: the real app opened on a home folder, bounded waits, the demo.

`snap_compare` runs an app with `App.run()`, which makes its own event loop, so `HomeApp` opens
the engine in the app's own loop (on Load, before anything mounts) and closes it on unmount.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from textual.pilot import Pilot

from config.loader import load_config
from config.paths import Paths
from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.engine import Engine
from core.records import Run
from tests.waiting import DEFAULT_TIMEOUT, eventually
from tui.app import OrchestratorApp
from tui.modals.intervention import InterventionModal
from tui.screens.run_view import RunScreen


class HomeApp(OrchestratorApp):
    """The real app on `home`, its engine opened inside the app's event loop."""

    def __init__(self, home: Path, *, db_url: str | None = None, **kwargs: Any) -> None:
        # The engine class stands in until on_load opens the real one (the app only reads the
        # signature of resolve_intervention before that).
        super().__init__(cast(Engine, Engine), **kwargs)
        self._home = home
        self._db_url = db_url  # `--db URL`: the store is that PostgreSQL database

    async def on_load(self) -> None:
        self.engine = await Engine.open(Paths(self._home, db_url=self._db_url))

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
    """Let the app run until `condition` holds; fail naming `what` at the deadline."""
    await eventually(condition, what=what, timeout=timeout, pause=lambda: pilot.pause(0.02))


def run_screen(app: OrchestratorApp) -> RunScreen:
    """The run view on top of the stack (below a modal, if one shows)."""
    for screen in reversed(app.screen_stack):
        if isinstance(screen, RunScreen):
            return screen
    raise AssertionError(f"no run view open: {app.screen_stack}")


def has_run_screen(app: OrchestratorApp) -> bool:
    return any(isinstance(s, RunScreen) for s in app.screen_stack)


def view_ready(app: OrchestratorApp) -> bool:
    """The run view has read the run once and its log finished loading."""
    if not has_run_screen(app):
        return False
    screen = run_screen(app)
    return screen.refreshes > 0 and not screen.live_log.busy and screen.is_mounted


async def close_intervention_modal(pilot: Pilot[Any]) -> None:
    """Wait for the pending intervention's modal the app shows at once, and set it aside (Esc)."""
    app = cast(OrchestratorApp, pilot.app)
    await wait_for(
        pilot, lambda: isinstance(app.screen, InterventionModal), what="the intervention modal"
    )
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
    await wait_for(pilot, lambda: view_ready(app), what="the run view to load")


async def create_demo_run(engine: Engine, root: Path) -> Run:
    """A stored, pending run of the offline demo (sample repository, shipped cassette)."""
    repo = prepare_demo_repo(root)
    loaded = load_config(
        engine.paths,
        repo=repo,
        env=os.environ,
        cli={"llm.provider": "replay", "llm.replay": str(cassette_path())},
    )
    return await engine.create_run(DEMO_TASK, repo, loaded)


def fixed_clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment
