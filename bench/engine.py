"""Engine benchmark: a 200-phase replay run plus a log flood; prints figures, asserts nothing.

Usage: python bench/engine.py [--phases 200] [--log-lines 200000] [--growth-runs 5]

Figures:
- engine time per phase: wall time of the run minus the time spent inside git operations and
  verification subprocesses (both measured and printed separately). Target: <= 10 ms.
- log events per second: rows committed to the events table divided by wall time, with a bus
  subscriber attached and draining. Target: >= 20,000/s.
- home growth: five runs (RAG on) on one repository followed by `clean`; what the home folder
  grew by per run. Target: <= 300 KB a run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.loader import load_config
from config.paths import Paths
from core import baseline, phase_checks
from core.engine import Engine
from core.records import RunStatus
from core.retrieval import IndexedRetriever

SPENT = {"git": 0.0, "verify": 0.0, "retrieval": 0.0}


def _timed_async(bucket: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            SPENT[bucket] += time.perf_counter() - start

    return wrapper


def instrument() -> None:
    """Time what the engine awaits on git, verification and retrieval, to subtract it from wall time."""
    real_to_thread = asyncio.to_thread

    async def to_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if not getattr(fn, "__module__", "").startswith("core.git"):
            return await real_to_thread(fn, *args, **kwargs)
        start = time.perf_counter()
        try:
            return await real_to_thread(fn, *args, **kwargs)
        finally:
            SPENT["git"] += time.perf_counter() - start

    asyncio.to_thread = to_thread  # every git call of the engine goes through asyncio.to_thread
    phase_checks.run_steps = _timed_async("verify", phase_checks.run_steps)
    baseline.run_steps = _timed_async("verify", baseline.run_steps)
    # Retrieval refreshes the worktree's index and searches it (bench/rag.py measures that part).
    IndexedRetriever.retrieve = _timed_async("retrieval", IndexedRetriever.retrieve)  # type: ignore[method-assign]
    IndexedRetriever.prepare = _timed_async("retrieval", IndexedRetriever.prepare)  # type: ignore[method-assign]


def make_workspace(root: Path, phases: int) -> tuple[Path, Path]:
    repo = root / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "b"],
        ["config", "user.email", "b@b"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    plan = [
        {
            "id": f"p{i:03d}",
            "name": f"phase {i}",
            "description": "write one file",
            "dependencies": [f"p{i - 1:03d}"] if i % 10 else [],
            "estimated_complexity": "low",
            "risk_level": "low",
            "verification_criteria": [],
        }
        for i in range(phases)
    ]
    lines = [
        {
            "role": "planner",
            "phase": None,
            "attempt": None,
            "repair": 0,
            "request": None,
            "response": {
                "content": json.dumps({"phases": plan}),
                "prompt_tokens": 1,
                "completion_tokens": 1,
            },
        }
    ]
    for i in range(phases):
        block = f"f{i:03d}.txt\n```\n<<<<<<< SEARCH\n=======\nphase {i}\n>>>>>>> REPLACE\n```\n"
        lines.append(
            {
                "role": "executor",
                "phase": f"p{i:03d}",
                "attempt": 1,
                "repair": 0,
                "request": None,
                "response": {"content": block, "prompt_tokens": 1, "completion_tokens": 1},
            }
        )
    cassette = root / "bench.jsonl"
    cassette.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return repo, cassette


async def bench_run(root: Path, phases: int) -> None:
    repo, cassette = make_workspace(root, phases)
    paths = Paths.resolve(str(root / "home"), {})
    loaded = load_config(
        paths,
        repo=repo,
        env={},
        cli={
            "llm.provider": "replay",
            "llm.replay": str(cassette),
            "verification.test": ["true"],
            "execution.max_parallel_phases": 1,
            "rag.max_context_tokens": 200,
            # The instant embedder keeps background embedding from taking CPU from the engine.
            "models.embedder": "hashing-256",
        },
    )
    instrument()
    async with await Engine.open(paths) as engine:
        start = time.perf_counter()
        run = await engine.start_run("benchmark", repo, loaded)
        wall = time.perf_counter() - start
    assert run.status is RunStatus.COMPLETED, run.error
    engine_time = wall - SPENT["git"] - SPENT["verify"] - SPENT["retrieval"]
    print(f"phases: {phases}   wall: {wall:.2f} s")
    print(f"git time: {SPENT['git']:.2f} s ({SPENT['git'] / phases * 1000:.1f} ms/phase)")
    print(
        f"verification subprocess time: {SPENT['verify']:.2f} s ({SPENT['verify'] / phases * 1000:.1f} ms/phase)"
    )
    print(
        f"retrieval (index refresh + hybrid search): {SPENT['retrieval']:.2f} s "
        f"({SPENT['retrieval'] / phases * 1000:.1f} ms/phase)"
    )
    print(f"engine time per phase: {engine_time / phases * 1000:.2f} ms (target <= 10 ms)")


async def bench_logs(root: Path, count: int) -> None:
    paths = Paths.resolve(str(root / "home-logs"), {})
    async with await Engine.open(paths) as engine:
        run_id = (await engine.store.create_run("log flood", str(root), {})).id
        sub = engine.subscribe()
        received = 0

        async def drain() -> None:
            nonlocal received
            async for event in sub:
                received += len(getattr(event, "lines", ()))

        consumer = asyncio.create_task(drain())
        start = time.perf_counter()
        for i in range(count):
            engine.journal.log(
                run_id, None, "info", f"log line {i} with some typical length of text"
            )
            if i % 5000 == 0:
                await asyncio.sleep(0)
        await engine.journal.flush()
        wall = time.perf_counter() - start
        committed = await engine.store.count_logs(run_id)
        sub.close()
        await consumer
    print(
        f"log lines committed: {committed} in {wall:.2f} s -> {committed / wall:,.0f} events/s (target >= 20,000/s); "
        f"subscriber received {received}"
    )


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under folder, SQLite's write-ahead logs aside (they come and go with
    checkpoints and are bounded)."""
    return sum(
        f.stat().st_size
        for f in folder.rglob("*")
        if f.is_file() and not f.name.endswith(("-wal", "-shm"))
    )


async def bench_growth(root: Path, runs: int) -> None:
    """Runs of 10 phases each on one repository, then `clean`: the home's growth per run."""
    repo, cassette = make_workspace(root, 10)
    paths = Paths.resolve(str(root / "home-growth"), {})
    cli = {
        "llm.provider": "replay",
        "llm.replay": str(cassette),
        "verification.test": ["true"],
        "execution.max_parallel_phases": 1,
        "models.embedder": "hashing-256",
    }
    loaded = load_config(paths, repo=repo, env={}, cli=cli)
    async with await Engine.open(paths) as engine:
        first = await engine.start_run("growth 0", repo, loaded)  # the repository's index
        await engine.clean()
        before = folder_bytes(paths.home)
        for n in range(runs):
            run = await engine.start_run(f"growth {n + 1}", repo, loaded)
            assert run.status is RunStatus.COMPLETED, run.error
        await engine.clean()
    assert first.status is RunStatus.COMPLETED, first.error
    grown = folder_bytes(paths.home) - before
    print(
        f"home growth: {grown / 1024:.0f} KB after {runs} runs of 10 phases and `clean` = "
        f"{grown / runs / 1024:.0f} KB a run (target <= 300 KB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--phases", type=int, default=200)
    parser.add_argument("--log-lines", type=int, default=200_000)
    parser.add_argument("--growth-runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_logs(Path(tmp), args.log_lines))
        asyncio.run(bench_run(Path(tmp), args.phases))
        if args.growth_runs:
            growth = Path(tmp) / "growth"
            growth.mkdir()
            asyncio.run(bench_growth(growth, args.growth_runs))


if __name__ == "__main__":
    main()
