"""The real `orchestrator demo` in a real terminal (tmux): the approval modal shows, `a` approves,
and the run completes in the database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.clirun import ROOT, cli, cli_env

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"
)


class Tmux:
    """One tmux server on a private socket, with one session running a command."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "demo")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(f"orch-test-{os.getpid()}-{tmp_path.name}")
    try:
        yield server
    finally:
        subprocess.run(
            ["tmux", "-L", server.socket, "kill-server"], check=False, capture_output=True
        )


def poll(condition: Callable[[], bool], what: str, tmux: Tmux, timeout: float = 90) -> None:
    """Check `condition` every 0.2 s until it holds; fail with the screen after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; the screen shows:\n{tmux.screen()}")


def test_demo_in_tmux_waits_for_the_modal_and_a_approves(tmp_path: Path, tmux: Tmux) -> None:
    home = tmp_path / "home"
    env = cli_env(home, TERM="xterm-256color", COLUMNS="120", LINES="40")
    exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items() if k in _PASSED)
    command = f"env {exports} {_quote(sys.executable)} -m tui.cli demo; sleep 30"
    tmux("new-session", "-d", "-s", "demo", "-x", "120", "-y", "40", "-c", str(ROOT), command)

    def modal_drawn() -> bool:
        screen = tmux.screen()
        return all(
            s in screen for s in ("Decision needed", "high risk", "Approve (a)", "Reject (r)")
        )

    poll(modal_drawn, "the approval modal", tmux)
    tmux("send-keys", "-t", "demo", "a")

    def completed() -> bool:
        runs = json.loads(cli(home, "runs", "--json", check=True).stdout)
        return bool(runs) and runs[0]["status"] == "completed"

    poll(completed, "the run to complete in the database", tmux)
    [run] = json.loads(cli(home, "runs", "--json", check=True).stdout)
    assert run["phases_completed"] == run["phases_total"] == 3
    items = json.loads(cli(home, "interventions", "--run", run["id"], "--json", check=True).stdout)
    assert [(i["kind"], i["status"]) for i in items] == [("risk", "approved")]
    poll(lambda: "completed" in tmux.screen(), "the app to show the completed run", tmux)
    tmux("send-keys", "-t", "demo", "C-q")
    poll(lambda: "Agent Orchestrator" not in tmux.screen(), "the app to quit", tmux, timeout=30)


_PASSED = {"ORCHESTRATOR_HOME", "ORT_DISABLE_TELEMETRY", "PYTHONPATH", "TERM", "HOME", "PATH"}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
