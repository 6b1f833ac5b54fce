"""TUI benchmark: the app, headless, watching a real run that logs 5,000 lines per second.

Usage: python bench/tui.py [--rate 5000] [--seconds 10] [--presses 100]

A replayed one-phase run executes in the app's own event loop (the app drives it, as
`orchestrator run` does). The phase's verification command prints `--rate` lines per second for
`--seconds` seconds; every line takes the engine's real path: the verification runner streams it
to the run's journal, which stores it in SQLite in batches and then publishes it on the bus, where
the run view's live log picks it up. While the flood runs, keys are pressed in the run view
(scroll back and follow, pause/follow, tab switches, focus moves) and the delay from the key event to the first frame drawn after its
effect is measured.

Figures:
- lines emitted (printed by the command), persisted (stored in the events table; every number
  must be there exactly once), shown (entered the live log's window: appended as they arrived,
  or read with the newest page when the user resumes following after a pause);
- key press → visible effect delay, 50th and 99th percentile. Target: p99 < 100 ms, no line lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events
from textual.widgets import TabbedContent

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.records import RunStatus
from tui.app import OrchestratorApp
from tui.screens.run_view import RunScreen
from tui.widgets.log_view import LiveLog
from tui.widgets.timeline import PhaseTimeline

MARK = "bench line "

FLOOD = """
import sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
total, tick = int(rate * seconds), 0.01
per_tick = max(1, int(rate * tick))
start, n = time.perf_counter(), 0
while n < total:
    burst = min(per_tick, total - n)
    sys.stdout.write("".join(f"bench line {n + i} of {total}: some typical output text\\n" for i in range(burst)))
    sys.stdout.flush()
    n += burst
    delay = start + (n / rate) - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
print(f"emitted {n} lines in {time.perf_counter() - start:.2f} s", file=sys.stderr)
"""


def make_workspace(root: Path, rate: int, seconds: float) -> tuple[Path, Path, str]:
    """A git repository, a cassette for a one-phase plan, and the flooding verification command."""
    repo = root / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "bench"],
        ["config", "user.email", "bench@localhost"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    plan = {
        "phases": [
            {
                "id": "p001",
                "name": "write a file while the checks print a lot",
                "description": "one file",
                "dependencies": [],
                "estimated_complexity": "low",
                "risk_level": "low",
                "verification_criteria": [],
            }
        ]
    }
    block = "notes.txt\n```\n<<<<<<< SEARCH\n=======\nbench\n>>>>>>> REPLACE\n```\n"
    answers: list[dict[str, Any]] = [
        {"role": "planner", "phase": None, "content": json.dumps(plan)},
        {"role": "executor", "phase": "p001", "content": block},
    ]
    cassette = root / "bench.jsonl"
    cassette.write_text(
        "".join(
            json.dumps(
                {
                    "role": a["role"],
                    "phase": a["phase"],
                    "attempt": 1 if a["phase"] else None,
                    "repair": 0,
                    "request": None,
                    "response": {
                        "content": a["content"],
                        "prompt_tokens": 1,
                        "completion_tokens": 1,
                    },
                }
            )
            + "\n"
            for a in answers
        )
    )
    script = root / "flood.py"
    script.write_text(FLOOD)
    return repo, cassette, f"{sys.executable} {script} {rate} {seconds}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def bench(root: Path, rate: int, seconds: float, presses: int) -> None:
    repo, cassette, command = make_workspace(root, rate, seconds)
    paths = Paths.resolve(str(root / "home"), {})
    loaded = load_config(
        paths,
        repo=repo,
        env={},
        cli={
            "llm.provider": "replay",
            "llm.replay": str(cassette),
            "verification.test": [command],
            "verification.timeout_seconds": seconds * 4 + 60,
            # The flood belongs to the phase's attempt; a baseline run of the base commit would
            # run the same command first and double the lines.
            "verification.baseline": False,
            "rag.max_context_tokens": 200,
        },
    )
    engine = await Engine.open(paths)
    try:
        await _drive(engine, repo, loaded, rate, seconds, presses)
    finally:
        await engine.close()


async def _drive(
    engine: Engine, repo: Path, loaded: Any, rate: int, seconds: float, presses: int
) -> None:
    """Run the flood in the app, press keys, and print the figures."""
    run = await engine.create_run("benchmark the live log", repo, loaded)
    app = OrchestratorApp(engine, initial_run=run.id, start_initial="execute")
    frames: list[float] = []
    appended = 0  # bench lines appended to the live log as they arrived
    entered: set[int] = set()  # seqs of bench lines that were ever in the live log's window
    delays: list[float] = []
    kinds: list[str] = []
    async with app.run_test(size=(130, 40)) as pilot:
        real_display = app._display
        # A key press waiting for its effect: (when it was sent, the effect, set when drawn).
        pending: list[tuple[float, Callable[[], bool], asyncio.Event]] = []

        def display(screen: Any, renderable: Any) -> None:
            real_display(screen, renderable)
            if renderable is None:
                return
            now = time.perf_counter()
            frames.append(now)
            # Rendering and this call run without a break, so a frame drawn while the effect
            # holds is the first one that shows it.
            if pending and pending[0][1]():
                start, _, drawn = pending.pop()
                delays.append((now - start) * 1000)
                drawn.set()

        app._display = display  # type: ignore[method-assign]

        while not any(isinstance(s, RunScreen) for s in app.screen_stack):
            await pilot.pause(0.01)
        screen = next(s for s in app.screen_stack if isinstance(s, RunScreen))
        log = screen.query_one(LiveLog)
        tabs = screen.query_one(TabbedContent)
        real_append = log._append

        def counting_append(records: Any) -> None:
            nonlocal appended
            marked = [r.seq for r in records if MARK in r.message]
            appended += len(marked)
            entered.update(marked)
            real_append(records)

        log._append = counting_append  # type: ignore[method-assign]
        real_load = log._load

        async def counting_load(work: Any) -> None:
            await real_load(work)  # a page read from the store (reload, scroll-back)
            entered.update(r.seq for r in log.records if MARK in r.message)

        log._load = counting_load  # type: ignore[method-assign]

        while appended == 0:  # the flood has reached the screen
            await pilot.pause(0.01)
        flood_started = time.perf_counter()
        lags: list[float] = []

        async def lag_probe() -> None:
            """How late a 10 ms sleep wakes up: how long the loop was busy with other work."""
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append((time.perf_counter() - before - 0.01) * 1000)

        probe = asyncio.create_task(lag_probe())

        def press(key: str) -> None:
            event = events.Key(key, key if len(key) == 1 else None)
            event.set_sender(app)
            assert app._driver is not None
            app._driver.send_message(event)

        async def measure(key: str, effect: Callable[[], bool]) -> None:
            drawn = asyncio.Event()
            pending.append((time.perf_counter(), effect, drawn))
            frames_before = len(frames)
            press(key)
            try:
                await asyncio.wait_for(drawn.wait(), 5)
            except TimeoutError:
                raise RuntimeError(
                    f"key {key!r} showed no effect within 5 s "
                    f"(frames {frames_before}->{len(frames)}, pending {len(pending)}, focus {app.focused}, follow {log.follow}, at tail {log.at_tail}, busy {log.busy})"
                ) from None

        timeline = screen.query_one(PhaseTimeline)
        # What a person watching the log presses: scroll back and follow again, pause and
        # follow, switch to the findings and back, focus the timeline and go back to the log.
        steps: list[tuple[str, str, Callable[[], bool]]] = [
            ("scroll", "pageup", lambda: not log.follow),
            ("scroll", "end", lambda: log.follow),
            ("pause", "p", lambda: not log.follow),
            ("pause", "p", lambda: log.follow),
            ("tab", "f", lambda: tabs.active == "findings"),
            ("tab", "l", lambda: tabs.active == "log" and log.has_focus),
            ("focus", "t", lambda: timeline.has_focus),
            ("focus", "l", lambda: log.has_focus),
        ]
        for i in range(presses):
            if time.perf_counter() - flood_started > seconds * 0.9:
                break
            kind, key, effect = steps[i % len(steps)]
            await measure(key, effect)
            kinds.append(kind)
            await asyncio.sleep(0.08)

        probe.cancel()
        deadline = time.perf_counter() + seconds * 6 + 60
        while screen.run is None or screen.run.status in (
            RunStatus.PENDING,
            RunStatus.PLANNING,
            RunStatus.EXECUTING,
        ):
            await pilot.pause(0.05)
            if time.perf_counter() > deadline:
                raise RuntimeError("the run did not finish")
        await pilot.pause(1.0)  # the last batches reach the screen
        final = screen.run.status
        held = len(log.records)
    await engine.journal.flush()
    stored = await engine.log_page(run.id, after_seq=0, limit=10**8, contains=MARK)

    total = int(rate * seconds)
    numbers = [int(r.message.split(MARK, 1)[1].split(" ", 1)[0]) for r in stored]
    missing = total - len(set(numbers))
    duplicated = len(numbers) - len(set(numbers))
    print(f"run {run.id}: {final}; flood {rate:,} lines/s for {seconds:g} s")
    print(f"lines emitted:   {total:,}")
    print(f"lines persisted: {len(stored):,} (missing {missing}, duplicated {duplicated})")
    print(
        f"lines shown:     {len(entered):,} passed through the live log ({appended:,} appended "
        f"as they arrived, the rest with the newest page when following resumed); "
        f"{total - len(entered):,} arrived while the view was paused and stay in the store; "
        f"{held:,} held in memory at the end"
    )
    print(
        f"key press -> visible effect over {len(delays)} presses: "
        f"p50 {statistics.median(delays):.1f} ms, p99 {percentile(delays, 99):.1f} ms, "
        f"max {max(delays):.1f} ms (target p99 < 100 ms)"
    )
    for kind in sorted(set(kinds)):
        some = [d for d, k in zip(delays, kinds, strict=True) if k == kind]
        print(
            f"  {kind:<7} ({len(some)} presses): p50 {statistics.median(some):.1f} ms, "
            f"p99 {percentile(some, 99):.1f} ms"
        )
    print(f"frames drawn: {len(frames)}")
    print(
        f"event loop lag during the flood (10 ms sleeps): p50 {statistics.median(lags):.1f} ms, "
        f"p99 {percentile(lags, 99):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--presses", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(Path(tmp), args.rate, args.seconds, args.presses))


if __name__ == "__main__":
    main()
