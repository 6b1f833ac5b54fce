"""How fast analytics are on a big history: `stats` through the store and from the shell.

Seeds N runs (default 10,000) with phases, attempts, model calls, findings and interventions
into a temporary home (tests/stats_seed.py), then prints the time of the store's grouped reads,
of the whole document through the engine, and of `orchestrator stats --json` and
`orchestrator runs --json --limit 0` as subprocesses (interpreter start included).

Usage: nice -n 19 .venv/bin/python bench/stats.py [--runs 10000] [--days 90] [--repeat 5]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.paths import Paths
from core.engine import Engine
from tests.clirun import cli_env
from tests.stats_seed import seed_history


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, best {min(values) * 1000:.0f} ms"


async def _through_the_engine(home: Path, repeat: int) -> tuple[list[float], list[float], dict]:
    engine = await Engine.open(Paths(home))
    rows_times, doc_times = [], []
    try:
        doc: dict = {}
        for _ in range(repeat):
            start = time.perf_counter()
            await engine.store.stats_rows()
            rows_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            doc = await engine.stats()
            doc_times.append(time.perf_counter() - start)
        return rows_times, doc_times, doc
    finally:
        await engine.close()


def _shell(home: Path, *args: str, repeat: int) -> tuple[list[float], str]:
    times, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "tui.cli", *args],
            cwd=ROOT,
            env=cli_env(home),
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - start)
        out = proc.stdout
    return times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        home = Path(tmp) / "home"
        start = time.perf_counter()
        seed_history(Paths(home).db, runs=args.runs, days=args.days)
        print(
            f"seeded {args.runs} runs over {args.days} days in {time.perf_counter() - start:.1f} s"
        )
        rows_times, doc_times, doc = asyncio.run(_through_the_engine(home, args.repeat))
        t = doc["totals"]
        print(
            f"history: {t['runs']} runs, {t['phases']} phases, {t['attempts']} attempts, "
            f"{t['calls']} model calls, {t['findings']} findings, {t['interventions']} interventions"
        )
        print(f"store.stats_rows (SQL): {_ms(rows_times)}")
        print(f"engine.stats (SQL + document): {_ms(doc_times)}")
        shell, out = _shell(home, "stats", "--json", repeat=args.repeat)
        assert json.loads(out)["totals"]["runs"] == args.runs
        print(f"`orchestrator stats --json` (whole process): {_ms(shell)}")
        human, _ = _shell(home, "stats", repeat=args.repeat)
        print(f"`orchestrator stats` (whole process): {_ms(human)}")
        listed, out = _shell(
            home, "runs", "--json", "--limit", "0", repeat=max(1, args.repeat // 2)
        )
        assert len(json.loads(out)) == args.runs
        print(f"`orchestrator runs --json --limit 0` (whole process): {_ms(listed)}")


if __name__ == "__main__":
    main()
