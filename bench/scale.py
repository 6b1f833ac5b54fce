"""Scale benchmark: queued replay-demo runs carried out by 1, 2 and 4 workers; prints figures.

Usage: python bench/scale.py [--runs 8] [--workers 1,2,4] [--max-parallel 1] [--claims 10]
                             [--poll 0.02] [--timeout 900] [--db URL | --pg] [--keep]

Every run is the shipped demo (same task, same cassette, no approval gate), submitted with
`orchestrator submit TASK --repo REPO --provider replay --replay CASSETTE` and carried out by
`orchestrator worker --id NAME --max-parallel N` processes on this machine. Figures:

- runs completed per minute with 1, 2 and 4 workers: the runs submitted, divided by the wall time
  from starting the workers to the last run's end.
- claim latency (p50/p99): with idle workers waiting, runs submitted one at a time; the stored
  time from a run's submission (created_at) to its start (started_at).
- event latency (p50/p99): this process follows the runs' events as another machine's app
  would (Engine.wait_for_change: woken by PostgreSQL's NOTIFY, polling every second only as a
  fallback; on SQLite reading the events table every --poll seconds); for each event, the time
  it was first seen here minus the time the worker logged it (its `ts`; the worker's journal
  stores lines in batches, so this includes the batching).

All processes share one home (SQLite) unless --db names a shared database (passed to every
command as `--db URL`, and to this process's engine as ORCHESTRATOR__STATE__URL). Needs the
`submit` and `worker` commands; says so and exits 2 when they are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.paths import Paths
from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.engine import Engine
from core.records import FINISHED_RUN_STATUSES, RunStatus
from core.timeutil import parse_ts


class Bench:
    """Runs the orchestrator's CLI against one home (and optionally one shared database)."""

    def __init__(self, home: Path, db: str | None) -> None:
        self.home = home
        self.db = db
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR")},
            "ORCHESTRATOR_HOME": str(home),
            "PYTHONPATH": str(ROOT),
            "ORT_DISABLE_TELEMETRY": "1",
            "ORCHESTRATOR__MODELS__EMBEDDER": "hashing-256",
            "ORCHESTRATOR_SEARCH_DAEMON": "off",
            # The demo's high-risk phase would wait for a person: the bench measures the machines.
            "ORCHESTRATOR__EXECUTION__APPROVAL_RISK_LEVEL": "never",
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tui.cli", *(["--db", self.db] if self.db else []), *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def submit(self, repo: Path) -> str:
        proc = self.run(
            "submit",
            DEMO_TASK,
            "--repo",
            str(repo),
            "--provider",
            "replay",
            "--replay",
            str(cassette_path()),
        )
        first = proc.stdout.splitlines()[0] if proc.stdout else ""
        if proc.returncode != 0 or not first.startswith("run "):
            raise SystemExit(
                f"error: orchestrator submit failed ({proc.returncode}):\n{proc.stderr}"
            )
        return first.split()[1]

    def start_workers(self, n: int, max_parallel: int) -> list[subprocess.Popen[str]]:
        """n worker processes; each one's output goes to <home>/worker-K.out (read if it dies)."""
        self.home.mkdir(parents=True, exist_ok=True)
        workers = []
        for k in range(1, n + 1):
            with (self.home / f"worker-{k}.out").open("w") as out:
                workers.append(
                    subprocess.Popen(
                        self.argv(
                            "worker", "--id", f"bench-w{k}", "--max-parallel", str(max_parallel)
                        ),
                        cwd=ROOT,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
        return workers


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    """SIGTERM (a worker stops claiming and releases what it drives), then SIGKILL after 60 s."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait(timeout=30)


def require_commands(bench: Bench) -> None:
    """Stop with a clear message when this checkout has no `submit` or `worker` command."""
    missing = [cmd for cmd in ("submit", "worker") if bench.run(cmd, "--help").returncode != 0]
    if missing:
        names = " and ".join(f"`orchestrator {m}`" for m in missing)
        print(
            f"error: bench/scale.py needs {names} (issue 14's queue and workers), which this "
            "checkout does not have; run it on a version that has them",
            file=sys.stderr,
        )
        raise SystemExit(2)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def spread(values: list[float], unit: float = 1000.0) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 50) * unit:.0f} ms, p99 {percentile(values, 99) * unit:.0f} ms"
        f" ({len(values)} samples, max {max(values) * unit:.0f} ms)"
    )


async def follow(
    engine: Engine,
    run_ids: list[str],
    poll: float,
    deadline: float,
    workers: list[subprocess.Popen[str]],
) -> tuple[list[float], dict[str, RunStatus]]:
    """Follow the runs' events until every run has ended; returns event latencies (seconds) and
    each run's final status."""
    seqs = dict.fromkeys(run_ids, 0)
    since = datetime.now(UTC)  # events stored before this process followed are not latencies
    latencies: list[float] = []
    ended: dict[str, RunStatus] = {}
    while len(ended) < len(run_ids):
        mark = await engine.change_mark()  # before reading: a change seen after it ends the wait
        if time.monotonic() > deadline:
            raise SystemExit(
                f"error: runs still not finished at the deadline: {sorted(set(run_ids) - set(ended))}"
            )
        dead = [w for w in workers if w.poll() is not None]
        if dead:
            raise SystemExit(
                f"error: a worker (pid {dead[0].pid}) exited with code {dead[0].returncode};"
                " its output is in the home's worker-K.out (run with --keep to read it)"
            )
        for run_id in run_ids:
            if run_id in ended:
                continue
            batch = await engine.logs(run_id, after_seq=seqs[run_id], limit=5000)
            now = datetime.now(UTC)
            for record in batch:
                stored = parse_ts(record.ts)
                if stored >= since:
                    latencies.append((now - stored).total_seconds())
            if batch:
                seqs[run_id] = batch[-1].seq
            run = await engine.get_run(run_id)
            if run.status in FINISHED_RUN_STATUSES:
                ended[run_id] = run.status
        await engine.wait_for_change(poll, since=mark)  # NOTIFY on PostgreSQL, a sleep on SQLite
    return latencies, ended


def follow_poll(args: argparse.Namespace) -> float:
    """How long a read waits for a change: --poll on SQLite; on PostgreSQL the NOTIFY wakes the
    reader, so polling (every second) is only the fallback."""
    return max(args.poll, 1.0) if args.db else args.poll


async def throughput(
    root: Path, n_workers: int, args: argparse.Namespace
) -> tuple[float, list[float], dict[str, RunStatus]]:
    """Runs per minute with n workers, and the event latencies seen meanwhile."""
    home = root / f"home-{n_workers}"
    bench = Bench(home, args.db)
    repo = prepare_demo_repo(root / f"demo-{n_workers}")
    run_ids = [bench.submit(repo) for _ in range(args.runs)]
    async with await Engine.open(Paths.resolve(str(home), cli_db=args.db)) as engine:
        started = time.monotonic()
        workers = bench.start_workers(n_workers, args.max_parallel)
        try:
            latencies, ended = await follow(
                engine, run_ids, follow_poll(args), started + args.timeout, workers
            )
        finally:
            stop_workers(workers)
        elapsed = time.monotonic() - started
    done = sum(1 for s in ended.values() if s is RunStatus.COMPLETED)
    return done / (elapsed / 60.0), latencies, ended


async def claim_latency(root: Path, args: argparse.Namespace) -> list[float]:
    """Submit runs one at a time to two idle workers; stored submission-to-start times."""
    home = root / "home-claims"
    bench = Bench(home, args.db)
    repo = prepare_demo_repo(root / "demo-claims")
    out: list[float] = []
    workers = bench.start_workers(2, 1)
    try:
        async with await Engine.open(Paths.resolve(str(home), cli_db=args.db)) as engine:
            for _ in range(args.claims):
                run_id = bench.submit(repo)
                await follow(
                    engine, [run_id], follow_poll(args), time.monotonic() + args.timeout, workers
                )
                run = await engine.get_run(run_id)
                if run.started_at:
                    out.append(
                        (parse_ts(run.started_at) - parse_ts(run.created_at)).total_seconds()
                    )
    finally:
        stop_workers(workers)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs submitted per worker count")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument(
        "--max-parallel", type=int, default=1, help="runs each worker drives at once"
    )
    parser.add_argument("--claims", type=int, default=10, help="runs submitted one at a time")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between event reads")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds allowed per measurement"
    )
    parser.add_argument("--db", help="a shared database URL passed to every command (--db URL)")
    parser.add_argument(
        "--pg",
        action="store_true",
        help="start a throwaway PostgreSQL 15 as the tests do (tests/pg_support.py) and use it",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    server = None
    if args.pg:
        from tests.pg_support import missing_reason, start_server

        reason = missing_reason()
        if reason:
            raise SystemExit(f"error: --pg: {reason}")
        server = start_server()
        args.db = server.url(server.fresh_database())
    try:
        await measure(args, counts)
    finally:
        if server is not None:
            server.stop()


async def measure(args: argparse.Namespace, counts: list[int]) -> None:
    """Every figure, printed as it is measured."""
    if args.db:  # this process follows the runs in the same database the workers use
        os.environ["ORCHESTRATOR__STATE__URL"] = args.db
    root = Path(tempfile.mkdtemp(prefix="orchestrator-scale-"))
    require_commands(Bench(root / "home-probe", args.db))
    store = "PostgreSQL (--db)" if args.db else "SQLite (one shared home)"
    print(
        f"store: {store}; replay demo, {args.runs} runs per measurement, "
        f"--max-parallel {args.max_parallel}"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    all_latencies: list[float] = []
    for n in counts:
        per_minute, latencies, ended = await throughput(root, n, args)
        all_latencies += latencies
        statuses = ", ".join(
            f"{s}: {sum(1 for v in ended.values() if v == s)}" for s in sorted(set(ended.values()))
        )
        print(f"{n} worker(s): {per_minute:.2f} runs completed per minute ({statuses})")
    claims = await claim_latency(root, args)
    print(f"claim latency (submitted -> started): {spread(claims)}")
    print(f"event latency (stored by a worker -> seen by this process): {spread(all_latencies)}")
    if args.keep:
        print(f"homes kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
