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
        self.last_screen = ""  # the last screen captured, kept for a failure message

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        self.last_screen = self("capture-pane", "-p", "-t", "demo")
        return self.last_screen


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(f"orch-test-{os.getpid()}-{tmp_path.name}")
    try:
        yield server
    finally:
        subprocess.run(
            ["tmux", "-L", server.socket, "kill-server"], check=False, capture_output=True
        )


def poll(
    condition: Callable[[], bool], what: str, tmux: Tmux, home: Path, timeout: float = 90
) -> None:
    """Check `condition` every 0.2 s until it holds; after `timeout`, fail with what the screen
    showed (the pane stays after the app exits) and each stored run's status and error."""
    try:
        wait_until(condition, what=what, timeout=timeout, step=0.2)
    except AssertionError as exc:
        try:
            shown = f"the screen shows:\n{tmux.screen()}"
        except subprocess.CalledProcessError:
            shown = f"the tmux session had ended; its last screen was:\n{tmux.last_screen}"
        raise AssertionError(f"{exc}; {stored_runs(home)}; {shown}") from None


def stored_runs(home: Path) -> str:
    """Each run of `orchestrator runs --json`: id, status and error (or why it could not say)."""
    proc = cli(home, "runs", "--json")
    try:
        runs = json.loads(proc.stdout)
    except ValueError:
        return f"`runs --json` exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    listed = "; ".join(f"{r['id']} {r['status']}: {r.get('error')}" for r in runs)
    return f"stored runs: {listed or 'none'}"


def start(tmux: Tmux, home: Path, *args: str) -> None:
    """`orchestrator ARGS` in a 120x40 tmux session; it prints `exit N` when it ends."""
    env = cli_env(home, TERM="xterm-256color")
    exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items() if k in _PASSED)
    words = " ".join(_quote(a) for a in args)
    command = f"env {exports} {_quote(sys.executable)} -m tui.cli {words}; echo exit $?"
    # The pane stays after the app exits, showing the app's last frame (no alternate screen to
    # switch back from), so a failure message still says what the user saw.
    tmux("set-option", "-g", "remain-on-exit", "on", ";",
         "set-option", "-g", "alternate-screen", "off", ";",
         "new-session", "-d", "-s", "demo", "-x", "120", "-y", "40", "-c", str(ROOT), command)  # fmt: skip


def test_demo_in_tmux_waits_for_the_modal_and_a_approves(tmp_path: Path, tmux: Tmux) -> None:
    home = tmp_path / "home"
    start(tmux, home, "demo")

    def modal_drawn() -> bool:
        screen = tmux.screen()
        return all(
            s in screen for s in ("Decision needed", "high risk", "Approve (a)", "Reject (r)")
        )

    poll(modal_drawn, "the approval modal", tmux, home)
    tmux("send-keys", "-t", "demo", "a")

    def completed() -> bool:
        runs = json.loads(cli(home, "runs", "--json", check=True).stdout)
        return bool(runs) and runs[0]["status"] == "completed"

    poll(completed, "the run to complete in the database", tmux, home)
    [run] = json.loads(cli(home, "runs", "--json", check=True).stdout)
    assert run["phases_completed"] == run["phases_total"] == 3
    items = json.loads(cli(home, "interventions", "--run", run["id"], "--json", check=True).stdout)
    assert [(i["kind"], i["status"]) for i in items] == [("risk", "approved")]
    poll(lambda: "completed" in tmux.screen(), "the app to show the completed run", tmux, home)
    tmux("send-keys", "-t", "demo", "C-q")
    poll(lambda: "exit 0" in tmux.screen(), "the app to quit with code 0", tmux, home, timeout=30)


def test_run_and_resume_open_the_app_on_their_run(tmp_path: Path, tmux: Tmux) -> None:
    """A headless demo stopped while it waits is resumed in the app; then `run` starts another."""
    home = tmp_path / "home"
    waiting = spawn(home, "demo", "--headless")
    try:
        first = waiting.stdout.readline().split()[1] if waiting.stdout else ""

        def asks() -> bool:
            items = json.loads(cli(home, "interventions", "--pending", "--json").stdout or "[]")
            return bool(items)

        poll(asks, "the headless demo to ask", tmux, home)
        waiting.send_signal(signal.SIGTERM)
        waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    [run] = json.loads(cli(home, "runs", "--json", check=True).stdout)
    assert run["id"] == first and run["status"] == "interrupted"

    start(tmux, home, "resume", first, "--yes")  # --yes approves the risky phase as it comes
    poll(lambda: f"run {first}" in tmux.screen(), "the app on the resumed run", tmux, home)
    poll(lambda: run_status(home, first) == "completed", "the resumed run to complete", tmux, home)
    poll(lambda: "completed" in tmux.screen(), "the app to show it completed", tmux, home)
    tmux("send-keys", "-t", "demo", "C-q")
    poll(lambda: "exit 0" in tmux.screen(), "the app to quit with code 0", tmux, home, timeout=30)
    tmux("kill-session", "-t", "demo")

    repo = prepare_demo_repo(tmp_path / "another")
    start(tmux, home, "run", DEMO_TASK, "--repo", str(repo), "--provider", "replay",
          "--replay", str(cassette_path()), "--yes")  # fmt: skip

    def second() -> str | None:
        runs = json.loads(cli(home, "runs", "--json", check=True).stdout)
        return next((r["id"] for r in runs if r["id"] != first), None)

    poll(lambda: second() is not None, "the second run to be stored", tmux, home)
    run_id = second()
    poll(lambda: f"run {run_id}" in tmux.screen(), "the app on the new run", tmux, home)
    poll(lambda: run_status(home, run_id) == "completed", "the new run to complete", tmux, home)
    tmux("send-keys", "-t", "demo", "C-q")
    poll(lambda: "exit 0" in tmux.screen(), "the app to quit with code 0", tmux, home, timeout=30)


def run_status(home: Path, run_id: str | None) -> str:
    runs = json.loads(cli(home, "runs", "--json", check=True).stdout)
    return next((r["status"] for r in runs if r["id"] == run_id), "missing")


_PASSED = {"ORCHESTRATOR_HOME", "ORT_DISABLE_TELEMETRY", "PYTHONPATH", "TERM", "HOME", "PATH"}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
