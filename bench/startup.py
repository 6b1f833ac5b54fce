"""Startup benchmark: how long the CLI's listing and result commands, `models` and the app's first
screen take from a fresh process, against the bare interpreter on the same machine.

Usage: python bench/startup.py [--runs 9]

A temporary home gets a few runs (one offline demo run, with phases, findings and an intervention,
and three pending runs). Each command is started `--runs` times; the median wall time is printed,
and for listing and result commands also its ratio to a bare `python -c "import sqlite3, json"`.
Targets (issue 11): listing and result commands at most 8x the bare interpreter; `models` with no
API keys at most 1.5 s; the app's first screen (the run list drawn in a terminal) within 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LISTING_RATIO_TARGET = 8.0
MODELS_TARGET_S = 1.5
APP_TARGET_S = 1.5


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR")}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(key, None)
    env.update(
        {
            "ORCHESTRATOR_HOME": str(home),
            "ORCHESTRATOR__MODELS__EMBEDDER": "hashing-256",
            "ORT_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", *args]


def make_home(home: Path) -> str:
    """A home with one completed demo run and three pending runs; returns the demo run's id."""
    proc = subprocess.run(
        _cli(home, "demo", "--headless", "--yes"),
        cwd=ROOT,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the demo run failed:\n{proc.stdout}\n{proc.stderr}")
    run_id = proc.stdout.split()[1]
    asyncio.run(_pending_runs(home, 3))
    return run_id


async def _pending_runs(home: Path, n: int) -> None:
    from config.loader import load_config
    from config.paths import Paths
    from core.demo.prepare import cassette_path, prepare_demo_repo
    from core.engine import Engine

    paths = Paths(home)
    repo = prepare_demo_repo(paths.demo)
    loaded = load_config(
        paths, repo=repo, env={}, cli={"llm.provider": "replay", "llm.replay": str(cassette_path())}
    )
    async with await Engine.open(paths) as engine:
        for i in range(n):
            await engine.create_run(f"Pending task {i} for the startup bench", repo, loaded)


def wall(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of one command whose output is discarded."""
    start = time.perf_counter()
    subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    return time.perf_counter() - start


def median_walls(
    commands: dict[str, list[str]], env: dict[str, str], runs: int
) -> dict[str, float]:
    """The median wall time of each command, started in turns so a change in the machine's load
    touches all of them alike (one warm-up start each first)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, cmd in commands.items():
        wall(cmd, env)
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(wall(cmd, env))
    return {name: statistics.median(values) for name, values in times.items()}


def app_first_screen(home: Path, marker: str) -> float:
    """Seconds until the app, started in a pseudo-terminal, has drawn `marker` (a run's task)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app on the terminal
        os.chdir(ROOT)
        env = _env(home)
        env.update({"TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"})
        os.execvpe(sys.executable, _cli(home), env)
    start = time.perf_counter()
    seen = b""
    try:
        while marker.encode() not in seen:
            if time.perf_counter() - start > 60:
                raise SystemExit("the app did not draw its run list within 60 s")
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    seen = seen[-4096:] + os.read(fd, 65536)
                except OSError:
                    raise SystemExit(f"the app ended before drawing: {seen[-500:]!r}") from None
        return time.perf_counter() - start
    finally:
        os.write(fd, b"\x11")  # ctrl+q
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            try:
                select.select([fd], [], [], 0.1)
                os.read(fd, 65536)
            except OSError:
                pass
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9, help="starts per command (median)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="orchestrator-startup-") as tmp:
        home = Path(tmp) / "home"
        run_id = make_home(home)
        env = _env(home)
        listings = [
            ["runs"],
            ["runs", "--json"],
            ["show", run_id],
            ["show", run_id, "--json"],
            ["interventions"],
            ["interventions", "--json"],
            ["export", run_id],
            ["export", run_id, "--json"],
        ]
        commands = {"bare": [sys.executable, "-c", "import sqlite3, json"]}
        for command in listings:
            label = " ".join("RUN" if part == run_id else part for part in command)
            commands[label] = _cli(home, *command)
        commands["models"] = _cli(home, "models")
        medians = median_walls(commands, env, args.runs)
        bare = medians.pop("bare")
        models = medians.pop("models")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"startup, median of {args.runs} starts each, on a home with 4 runs "
            f"(load average {load} on {os.cpu_count()} cores)"
        )
        print(f"  bare interpreter (python -c 'import sqlite3, json'): {bare * 1000:6.0f} ms")
        for label, seconds in medians.items():
            print(f"  {label:<28} {seconds * 1000:6.0f} ms  {seconds / bare:4.1f}x bare")
        worst = max(medians.values()) / bare
        print(
            f"  listing and result commands: worst {worst:.1f}x bare "
            f"(target <= {LISTING_RATIO_TARGET:g}x)"
        )
        print(
            f"  models (no API keys)         {models * 1000:6.0f} ms  "
            f"(target <= {MODELS_TARGET_S:g} s)"
        )
        firsts = [app_first_screen(home, "Pending task 2") for _ in range(max(3, args.runs // 3))]
        first = statistics.median(firsts)
        print(
            f"  app, first screen drawn      {first * 1000:6.0f} ms  "
            f"(median of {len(firsts)}; target <= {APP_TARGET_S:g} s)"
        )


if __name__ == "__main__":
    main()
