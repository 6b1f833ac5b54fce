"""The real `orchestrator demo` in a real terminal (tmux): the approval modal shows, `a` approves,
and the run completes in the database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from tests.clirun import ROOT, cli, cli_env, spawn
from tests.waiting import wait_until

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
    try:
        wait_until(condition, what=what, timeout=timeout, step=0.2)
    except AssertionError as exc:
        try:
            shown = f"the screen shows:\n{tmux.screen()}"
        except subprocess.CalledProcessError:  # the pane closes 30 s after the app exits
            shown = "the tmux session had ended: the app exited over 30 s before the deadline"
        raise AssertionError(f"{exc}; {shown}") from None


def start(tmux: Tmux, home: Path, *args: str) -> None:
    """`orchestrator ARGS` in a 120x40 tmux session; it prints `exit N` when it ends."""
    env = cli_env(home, TERM="xterm-256color")
    exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items() if k in _PASSED)
    words = " ".join(_quote(a) for a in args)
    command = f"env {exports} {_quote(sys.executable)} -m tui.cli {words}; echo exit $?; sleep 30"
    tmux("new-session", "-d", "-s", "demo", "-x", "120", "-y", "40", "-c", str(ROOT), command)


def test_demo_in_tmux_waits_for_the_modal_and_a_approves(tmp_path: Path, tmux: Tmux) -> None:
    home = tmp_path / "home"
    start(tmux, home, "demo")

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
    poll(lambda: "exit 0" in tmux.screen(), "the app to quit with code 0", tmux, timeout=30)


def test_run_and_resume_open_the_app_on_their_run(tmp_path: Path, tmux: Tmux) -> None:
    """A headless demo stopped while it waits is resumed in the app; then `run` starts another."""
    home = tmp_path / "home"
    waiting = spawn(home, "demo", "--headless")
    try:
        first = waiting.stdout.readline().split()[1] if waiting.stdout else ""

        def asks() -> bool:
            items = json.loads(cli(home, "interventions", "--pending", "--json").stdout or "[]")
            return bool(items)

        poll(asks, "the headless demo to ask", tmux)
        waiting.send_signal(signal.SIGTERM)
        waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    [run] = json.loads(cli(home, "runs", "--json", check=True).stdout)
    assert run["id"] == first and run["status"] == "interrupted"

    start(tmux, home, "resume", first, "--yes")  # --yes approves the risky phase as it comes
    poll(lambda: f"run {first}" in tmux.screen(), "the app on the resumed run", tmux)
    poll(lambda: run_status(home, first) == "completed", "the resumed run to complete", tmux)
    poll(lambda: "completed" in tmux.screen(), "the app to show it completed", tmux)
    tmux("send-keys", "-t", "demo", "C-q")
    poll(lambda: "exit 0" in tmux.screen(), "the app to quit with code 0", tmux, timeout=30)
    tmux("kill-session", "-t", "demo")

    repo = prepare_demo_repo(tmp_path / "another")
    start(tmux, home, "run", DEMO_TASK, "--repo", str(repo), "--provider", "replay",
          "--replay", str(cassette_path()), "--yes")  # fmt: skip

    def second() -> str | None:
        runs = json.loads(cli(home, "runs", "--json", check=True).stdout)
        return next((r["id"] for r in runs if r["id"] != first), None)

    poll(lambda: second() is not None, "the second run to be stored", tmux)
    run_id = second()
    poll(lambda: f"run {run_id}" in tmux.screen(), "the app on the new run", tmux)
    poll(lambda: run_status(home, run_id) == "completed", "the new run to complete", tmux)
    tmux("send-keys", "-t", "demo", "C-q")
    poll(lambda: "exit 0" in tmux.screen(), "the app to quit with code 0", tmux, timeout=30)


def run_status(home: Path, run_id: str | None) -> str:
    runs = json.loads(cli(home, "runs", "--json", check=True).stdout)
    return next((r["status"] for r in runs if r["id"] == run_id), "missing")


_PASSED = {"ORCHESTRATOR_HOME", "ORT_DISABLE_TELEMETRY", "PYTHONPATH", "TERM", "HOME", "PATH"}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
