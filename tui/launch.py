"""Open the Textual app from the CLI, in the CLI's event loop and with its engine."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.engine import Engine


def interactive() -> bool:
    """True when the app can draw: both standard input and output are a terminal, or Textual is
    told to draw through another driver (TEXTUAL_DRIVER: `orchestrator serve` names its web one)."""
    if os.environ.get("TEXTUAL_DRIVER"):
        return True
    return sys.stdin.isatty() and sys.stdout.isatty()


async def open_app(
    engine: Engine,
    *,
    run_id: str | None = None,
    start: str | None = None,
    auto_approve: bool = False,
) -> int:
    """Run the app until the user quits; `start` ("execute" or "resume") drives `run_id` in it.

    Returns 0, or 1 when the run the app was opened to drive ended without completing.
    """
    from tui.app import OrchestratorApp

    app = OrchestratorApp(
        engine, initial_run=run_id, auto_approve=auto_approve, start_initial=start
    )
    code = await app.run_async()
    await engine.journal.flush()
    for note in app.exit_notes():
        print(note)
    return app.exit_code_for_initial() if code is None else code
