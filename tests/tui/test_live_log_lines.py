"""Model output in the live log: streamed pieces reach the store, the app and `-v` as whole lines.

The fake Ollama server streams each answer in many small pieces, so pieces end mid-word and
mid-line; what the user reads must still be the answer's lines, one per log line.
"""

from __future__ import annotations

import json
from pathlib import Path

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.llm.client import LineJoiner
from core.records import RunStatus
from tests.cassette import new_file, phase
from tests.clirun import cli
from tests.conftest import make_repo
from tests.fakes.ollama_server import FakeOllama
from tests.tui.run_view_support import run_screen, view_ready, wait_for
from tests.waiting import eventually
from tui.app import OrchestratorApp

PLAN = json.dumps({"phases": [phase("phase-001")]}, indent=2)
CODE = '''def low_stock(inventory, threshold=3):
    """Items whose quantity is below the threshold, by name."""
    return sorted(name for name, qty in inventory.items() if qty < threshold)
'''
ANSWER = "I'll add the report module.\n\n" + new_file("report.py", CODE)


def _script(fake: FakeOllama) -> None:
    fake.models = {"coder:raw": 8192}
    fake.stream_pieces = 37  # pieces of a few characters: every line arrives in several
    fake.chat_answers = [PLAN, ANSWER]


def _expected() -> list[str]:
    return PLAN.splitlines() + ANSWER.splitlines()


async def test_model_output_is_stored_and_shown_as_whole_lines(
    home: Path, tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    _script(fake_ollama)
    repo = make_repo(tmp_path / "repo")
    paths = Paths(home)
    loaded = load_config(
        paths,
        repo=repo,
        env={"OLLAMA_HOST": fake_ollama.url},
        cli={"models.planner": "coder:raw", "models.executor": "coder:raw", "rag.enabled": False},
    )
    async with await Engine.open(paths) as engine:
        run = await engine.create_run("add a low-stock report", repo, loaded)
        app = OrchestratorApp(engine, initial_run=run.id, start_initial="execute")
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: view_ready(app), what="the run view")
            screen = run_screen(app)
            await wait_for(
                pilot,
                lambda: screen.run is not None and screen.run.status is RunStatus.COMPLETED,
                what="the run to complete",
                timeout=120,
            )
            stored = [
                r.message for r in await engine.logs(run.id, limit=10_000) if r.level == "llm"
            ]
            assert stored == _expected()
            await wait_for(
                pilot,
                lambda: (
                    len([r for r in screen.live_log.records if r.level == "llm"]) == len(stored)
                ),
                what="every model line in the app's log",
            )
            shown = [
                screen.live_log.line_text(r).plain
                for r in screen.live_log.records
                if r.level == "llm"
            ]
            for line, message in zip(shown, _expected(), strict=True):
                assert line.rstrip().endswith(message.rstrip()), (line, message)
                assert "⏎" not in line


def test_verbose_prints_model_output_as_whole_lines(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    _script(fake_ollama)
    repo = make_repo(tmp_path / "repo")
    proc = cli(
        tmp_path / "home",
        "run",
        "add a low-stock report",
        "--repo",
        str(repo),
        "--headless",
        "-v",
        "--host",
        fake_ollama.url,
        "--model",
        "coder:raw",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = proc.stdout.splitlines()
    start = printed.index("    " + ANSWER.splitlines()[0])
    answer = ANSWER.splitlines()
    assert printed[start : start + len(answer)] == ["    " + line for line in answer]


async def test_a_pause_in_the_stream_hands_on_the_partial_line() -> None:
    out: list[str] = []
    lines = LineJoiner(out.append, pause_seconds=0.01)
    lines.add("first line\nhalf a li")
    assert out == ["first line"]
    await eventually(lambda: out == ["first line", "half a li"], what="the pause to flush")
    lines.add("ne\r\nlast, with no newline")
    lines.flush()
    assert out == ["first line", "half a li", "ne", "last, with no newline"]
