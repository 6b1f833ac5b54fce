"""Regenerate the README's screenshots from real runs of the offline demo, rendered to SVG.

- demo.svg, show.svg: real CLI output of `orchestrator demo --headless --yes` and `show`.
- tui-*.svg: every screen and modal of the terminal UI (tui-lessons.svg: the lesson the first
  demo run taught), driven by the keyboard in a headless
  app on the same home folder, while a real `orchestrator demo --headless` waits for its approval
  in another process (so the modal, the run view and the interventions list show a live run);
  tui-analytics.svg on a seeded two-week history (`generate.py analytics` makes only that one).
- app-in-browser.png: `orchestrator serve` in headless Chromium on such a waiting run.

Usage: .venv/bin/python screenshots/generate.py [--browser | analytics]   (only the PNG, or only tui-analytics.svg)
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot

from config.paths import Paths
from core.engine import Engine
from tests.stats_seed import seed_history
from tui.app import OrchestratorApp
from tui.modals.confirm import ConfirmModal
from tui.modals.export import ExportModal
from tui.modals.help import HelpModal
from tui.modals.intervention import InterventionModal
from tui.modals.run_stopped import RunStoppedModal
from tui.screens.analytics import AnalyticsScreen
from tui.screens.interventions import InterventionsScreen
from tui.screens.lessons import LessonsScreen
from tui.screens.new_run import NewRunScreen
from tui.screens.run_view import RunScreen
from tui.screens.runs import RunsScreen

SIZE = (120, 34)
SHOWN_HOME = "~/.local/share/agent-orchestrator"


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "ORCHESTRATOR_HOME": str(home), "PYTHONPATH": str(ROOT)}


def orchestrator(home: Path, *args: str) -> str:
    """Run the CLI with an isolated home and return what it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env=env_for(home),
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def save(name: str, title: str, command: str, output: str) -> None:
    """Render `$ command` and its output as a terminal screenshot."""
    console = Console(record=True, width=110, file=io.StringIO())
    console.print(Text(f"$ {command}", style="bold green"))
    console.print(Text(output.rstrip("\n")))
    (HERE / name).write_text(console.export_svg(title=title))


PLANTED = {
    "pyproject.toml": "[project]\nname = 'calc'\nversion = '0.1'\n",
    "calc.py": (
        "import os\nimport subprocess\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n\n\n"
        "def label(n: int) -> str:\n    return n\n\n\n"
        "def run(cmd: str) -> int:\n    return subprocess.call(cmd, shell=True)\n"
    ),
    "tests/test_calc.py": (
        "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_add_wrong():\n    assert add(2, 2) == 5\n"
    ),
}


def planted_repo(root: Path) -> Path:
    """A small Python project with one defect for each default tool, committed to git."""
    for rel, text in PLANTED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    return root


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    """Let the app run until `condition` holds (at most about a minute)."""
    for _ in range(3000):
        if condition():
            await pilot.pause(0.1)
            return
        await pilot.pause(0.02)
    raise RuntimeError(f"timed out waiting for {what}; screens: {pilot.app.screen_stack}")


def on_top(app: OrchestratorApp, kind: type) -> Callable[[], bool]:
    return lambda: isinstance(app.screen, kind)


async def shot(pilot: Pilot[Any], name: str) -> None:
    """Save the app's screen once the footer and the last refresh have drawn."""
    await pilot.pause(0.5)
    svg = pilot.app.export_screenshot(title=name.removesuffix(".svg"))
    (HERE / name).write_text(svg)


async def tui_screens(home: Path, waiting: subprocess.Popen[bytes]) -> None:
    """Drive the app through every screen and modal while a headless demo (`waiting`, in another
    process) waits for its approval."""
    engine = await Engine.open(Paths(home))
    app = OrchestratorApp(engine)
    app.work_dir = Path.home() / "src" / "inventory-service"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, on_top(app, InterventionModal), "the headless run's approval")
            await wait_for(pilot, lambda: app.focused is not None, "the modal's focus")
            await shot(pilot, "tui-intervention.svg")
            await pilot.press("escape")
            runs = app.screen
            assert isinstance(runs, RunsScreen)
            await wait_for(pilot, lambda: len(runs.summaries) == 2, "both runs in the table")
            await pilot.press("home")  # the newest run: the one waiting in the other process
            newest = runs.summaries[0].run.id
            await wait_for(pilot, lambda: runs.current_run_id == newest, "the newest run")
            await shot(pilot, "tui-runs.svg")

            await pilot.press("enter")
            await wait_for(pilot, on_top(app, RunScreen), "the run view")
            view = app.screen
            assert isinstance(view, RunScreen)
            await wait_for(pilot, lambda: view.refreshes > 0 and bool(view.phases), "its phases")
            await pilot.pause(1.0)
            await shot(pilot, "tui-run-view.svg")
            await pilot.press("f")
            await pilot.pause(0.5)
            await shot(pilot, "tui-run-findings.svg")
            await pilot.press("t", "d")
            await pilot.pause(1.0)
            await shot(pilot, "tui-run-diff.svg")
            await pilot.press("escape")
            await wait_for(pilot, on_top(app, RunsScreen), "the runs list")
            if isinstance(app.screen, RunScreen):
                await pilot.press("escape")

            await pilot.press("2")
            listing = app.screen
            assert isinstance(listing, InterventionsScreen)
            await wait_for(pilot, lambda: len(listing.items) >= 1, "the interventions list")
            await shot(pilot, "tui-interventions.svg")
            await pilot.press("3")
            await wait_for(pilot, on_top(app, NewRunScreen), "the form")
            await shot(pilot, "tui-new-run.svg")
            await pilot.press("escape")  # the form's fields take digits; Esc goes back to the runs
            await wait_for(pilot, on_top(app, RunsScreen), "the runs list")
            await pilot.press("question_mark")
            await wait_for(pilot, on_top(app, HelpModal), "the key help")
            await shot(pilot, "tui-help.svg")
            await pilot.press("escape", "C")
            await wait_for(pilot, on_top(app, ConfirmModal), "the cancel confirm")
            await shot(pilot, "tui-confirm-cancel.svg")
            await pilot.press("n", "E")
            await wait_for(pilot, on_top(app, ExportModal), "the export dialog")
            await shot(pilot, "tui-export.svg")
            await pilot.press("escape")

            # The first demo run's failed attempt taught a lesson: section 5 shows it.
            await pilot.press("5")
            await wait_for(pilot, on_top(app, LessonsScreen), "the lessons section")
            lessons = app.screen
            assert isinstance(lessons, LessonsScreen)
            await wait_for(pilot, lambda: len(lessons.items) >= 1, "the demo's lesson")
            await shot(pilot, "tui-lessons.svg")

            # Answer the headless run's question from the app; its process then finishes it.
            await pilot.press("2")
            await wait_for(pilot, on_top(app, InterventionsScreen), "the interventions list")
            await pilot.press("enter")
            await wait_for(pilot, on_top(app, InterventionModal), "the modal again")
            await pilot.press("a")
            await asyncio.to_thread(waiting.wait, 120)

            # A run started here and interrupted while it waits shows what to do next.
            await pilot.press("3", "ctrl+o")
            form = app.screen
            assert isinstance(form, NewRunScreen)
            await wait_for(pilot, lambda: form.provider == "replay", "the demo values")
            await pilot.press("ctrl+s")
            await wait_for(pilot, on_top(app, InterventionModal), "the new run's approval")
            await pilot.press("escape")
            for worker in [w for w in app.workers if w.group == "engine"]:
                worker.cancel()
            await wait_for(pilot, on_top(app, RunStoppedModal), "the run stopped modal")
            await shot(pilot, "tui-run-stopped.svg")
    finally:
        await engine.close()


def browser_shot(tmp: Path) -> Path:
    """app-in-browser.png: `orchestrator serve` opened in headless Chromium while a headless demo
    waits for its approval (the same steps as tests/test_serve.py), its decision set aside."""
    from tests.browser import Served, chromium, open_waiting_run

    async def shoot(url: str) -> Path:
        async with chromium(tmp) as page:
            await open_waiting_run(page, url)
            # Esc sets the decision aside: the shot shows the table and the footer's keys (the
            # served app draws no footer under the modal).
            await page.focus_terminal()
            await page.press("escape")
            await page.wait_for_text(
                "waiting", "4 Analytics", what="the runs table with its footer", timeout=60
            )
            return await page.screenshot(HERE / "app-in-browser.png")

    home = tmp / "browser-home"
    waiting = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "demo", "--headless"],
        cwd=ROOT,
        env=env_for(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    served = Served(home, tmp)
    try:
        return asyncio.run(shoot(served.url()))
    finally:
        served.stop()
        waiting.terminate()
        waiting.wait(30)


async def analytics_screen(home: Path) -> None:
    """The analytics section on a seeded history of 40 runs over two weeks (the demo's runs all
    fall on one day); its days come from the stored rows, so the shot is the same any day."""
    seed_history(Paths(home).db, runs=40, days=14, pending=False)
    engine = await Engine.open(Paths(home))
    app = OrchestratorApp(engine)
    try:
        async with app.run_test(size=(160, 45)) as pilot:  # all six plots at once
            await pilot.press("4")
            await wait_for(pilot, on_top(app, AnalyticsScreen), "the analytics section")
            screen = app.screen
            assert isinstance(screen, AnalyticsScreen)
            await wait_for(pilot, lambda: screen.figures is not None, "the figures")
            await pilot.pause(0.5)
            await shot(pilot, "tui-analytics.svg")
    finally:
        await engine.close()


def main() -> None:
    if sys.argv[1:] == ["--browser"]:  # only the browser screenshot
        with tempfile.TemporaryDirectory(prefix="orchestrator-") as tmp:
            print("wrote", browser_shot(Path(tmp)).relative_to(ROOT))
        return
    if sys.argv[1:] == ["analytics"]:  # only the analytics shot (no demo runs needed)
        with tempfile.TemporaryDirectory(prefix="orchestrator-") as tmp:
            asyncio.run(analytics_screen(Path(tmp) / "home"))
        return
    # A short home path: the app shows it as is (the CLI shots show the default one instead).
    with tempfile.TemporaryDirectory(prefix="orchestrator-") as tmp:
        home = Path(tmp) / "home"
        repo = planted_repo(Path(tmp) / "calc")
        env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "PYTHONPATH": str(ROOT)}
        checked = subprocess.run(
            [sys.executable, "-m", "tui.cli", "verify", str(repo)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        checked = checked.replace(str(home), "~/.local/share/agent-orchestrator")
        save("verify.svg", "orchestrator verify", "orchestrator verify ~/src/calc", checked)
        demo = orchestrator(home, "demo", "--headless", "--yes")
        demo = demo.replace(str(home), SHOWN_HOME)
        save("demo.svg", "orchestrator demo", "orchestrator demo --headless --yes", demo)
        run_id = json.loads(orchestrator(home, "runs", "--json"))[0]["id"]
        shown = orchestrator(home, "show", run_id).replace(str(home), SHOWN_HOME)
        save("show.svg", "orchestrator show", f"orchestrator show {run_id}", shown)
        waiting = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "demo", "--headless"],
            cwd=ROOT,
            env=env_for(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(tui_screens(home, waiting))
        finally:
            if waiting.poll() is None:
                waiting.terminate()
                waiting.wait(30)
        asyncio.run(analytics_screen(Path(tmp) / "history"))
        browser_shot(Path(tmp))
    shots = sorted([*HERE.glob("*.svg"), *HERE.glob("*.png")])
    print("wrote", ", ".join(str(p.relative_to(ROOT)) for p in shots))


if __name__ == "__main__":
    main()
