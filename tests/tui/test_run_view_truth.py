"""The app follows the store's truth about runs it only watches, and closes cleanly.

A run driven by another process (the CLI in a subprocess) publishes nothing on this app's bus, so
only the store tells the app that it was cancelled, finished, failed or lost; the run view and the
runs table must show that, with the asks it withdrew gone.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from config.paths import Paths
from tests.tui.run_view_support import run_screen, view_ready
from tests.tui.seed import MAIN_RUN, seed
from tests.tui.shell_support import ShellApp, wait_for

SIZE = (130, 40)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_a_run_view_closed_before_its_refresh_started_leaves_no_coroutine(
    home: Path,
) -> None:
    seed(Paths(home).db)
    app = ShellApp(home, initial_run=MAIN_RUN)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: view_ready(app), what="the run view's first read")
        screen = run_screen(app)
        # A read is asked for, then the view's workers are cancelled before it starts, as
        # Textual does when the view closes in the same moment.
        screen.request_refresh()
        screen.workers.cancel_group(screen, "run-refresh")
        await pilot.pause()
        # The view still reads when asked again (the cancelled read does not block the next).
        before = screen.refreshes
        screen.request_refresh()
        await wait_for(pilot, lambda: screen.refreshes > before, what="a read after the cancel")
    gc.collect()  # a never-awaited coroutine warns when collected: here, inside the test
