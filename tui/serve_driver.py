"""The driver the app draws with under `orchestrator serve`: textual-serve's web driver, and the
app quits when the server goes away (its input ends or its output breaks) instead of running on
unseen, with whatever runs it drives."""

from __future__ import annotations

import os

from textual import messages
from textual.drivers.web_driver import WebDriver

# The value of TEXTUAL_DRIVER that makes Textual use this driver.
SERVED_DRIVER = "tui.serve_driver:ServedDriver"
# What textual-serve sets for the app alone: gone once the app has drawn, so the processes the app
# starts (verification, agents, a Textual project's own tests) do not inherit a driver to import.
SERVED_ONLY = ("TEXTUAL_DRIVER", "TEXTUAL_FPS", "TEXTUAL_COLOR_SYSTEM", "COLUMNS", "ROWS")


class ServedDriver(WebDriver):
    """textual-serve's web driver; losing the server quits the app as the server's quit would."""

    _gone = False

    def _server_gone(self) -> None:
        if not self._gone:
            self._gone = True
            self._app.post_message(messages.ExitApp())

    def start_application_mode(self) -> None:
        super().start_application_mode()
        for name in SERVED_ONLY:
            os.environ.pop(name, None)
        if os.environ.get("TERM_PROGRAM") == "textual":
            os.environ.pop("TERM_PROGRAM", None)
            os.environ.pop("TERM_PROGRAM_VERSION", None)

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # stdin ended without a quit: the server is gone
            self._server_gone()

    def write(self, data: str) -> None:
        try:
            super().write(data)
        except OSError:  # the server closed our output (it exited or was killed)
            self._server_gone()

    def write_meta(self, data: dict[str, object]) -> None:
        try:
            super().write_meta(data)
        except OSError:
            self._server_gone()

    def write_binary_encoded(self, data: tuple[str | bytes, ...]) -> None:
        try:
            super().write_binary_encoded(data)
        except OSError:
            self._server_gone()
