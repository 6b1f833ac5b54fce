"""Snapshots are taken of a settled screen: one whose tables have measured their columns and that
draws the same twice in a row, with no animation scheduled, so a layout pass still pending under
load cannot be captured half done."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.waiting import DEFAULT_TIMEOUT, eventually


async def wait_settled(pilot: Pilot[Any], *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Let the app run until two screenshots taken a pause apart are the same."""
    shots: list[str] = []

    async def unchanged() -> bool:
        await pilot.wait_for_scheduled_animations()
        if not all(measured(table) for table in pilot.app.screen.query(DataTable)):
            shots.clear()
            return False
        shots.append(pilot.app.export_screenshot())
        return len(shots) > 1 and shots[-1] == shots[-2]

    await eventually(
        unchanged,
        what="the screen to settle (two screenshots alike)",
        timeout=timeout,
        pause=lambda: pilot.pause(0.05),
    )


def measured(table: DataTable[Any]) -> bool:
    """Whether a table has measured its columns for its rows (it does so when next idle)."""
    return not table._require_update_dimensions and not table._updated_cells
