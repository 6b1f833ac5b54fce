"""The driver the app draws with under `orchestrator serve`: textual-serve's web driver, and the
app quits when the server goes away (its standard input closes) instead of running on unseen."""

from __future__ import annotations

from textual import messages
from textual.drivers.web_driver import WebDriver

# The value of TEXTUAL_DRIVER that makes Textual use this driver.
SERVED_DRIVER = "tui.serve_driver:ServedDriver"


class ServedDriver(WebDriver):
    """textual-serve's web driver; the end of its input without a quit from the server quits too."""

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # stdin closed: the server died or dropped this session
            self._app.post_message(messages.ExitApp())
