"""Fault injection: kill -9 at random points (some during the resume too), sixteen processes on a
fresh home, a plugin executor that raises, cancel and kill -9 of a waiting run, hostile plan ids,
a 50 MB step output, a read-only home, a full disk and a truncated database.

Prints one table: case, runs, passed, and for each failure what stayed untrue. After every case
the store must tell the truth: no phase in_progress and no execution running in a stopped run, no
pending intervention in a finished one, an error stored for failed runs, nothing outside the home.

    python bench/faults.py            # full size (50 kill points, 16 processes x 2 rounds); long
    python bench/faults.py --quick    # a few of each, minutes
    python bench/faults.py --only kill,readonly

Mounting (read-only bind mount, small tmpfs) needs root; those cases are skipped otherwise.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from tests.clirun import cli, spawn
from tests.faultkit import cassette_file, new_file_edit, plan_phase, small_repo, untrue

FAST = {
    "ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "2",
    "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.5",
}


@dataclass
class Outcome:
    """One case's tally: how many runs, how many passed, what stayed untrue in the others."""

    case: str
    runs: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None

    def record(self, problems: list[str]) -> None:
        self.runs += 1
        if problems:
            self.failures.extend(problems[:3])
        else:
            self.passed += 1


# ---- helpers ---------------------------------------------------------------------------------------


def run_args(repo: Path, *, yes: bool = True, cassette: Path | None = None) -> list[str]:
    return [
        "run",
        DEMO_TASK,
        "--repo",
        str(repo),
        "--headless",
        *(["--yes"] if yes else []),
        "--provider",
        "replay",
        "--replay",
        str(cassette or cassette_path()),
    ]


def show(home: Path, run_id: str, **env: str) -> dict:
    proc = cli(home, "show", run_id, "--json", timeout=120, **env)
    if proc.returncode != 0:
        return {"status": f"unreadable: {proc.stderr.strip()[:200]}", "error": None}
    doc: dict = json.loads(proc.stdout)
    return doc


def runs_json(home: Path, *args: str, **env: str) -> list[dict]:
    proc = cli(home, "runs", "--json", *args, timeout=120, **env)
    return json.loads(proc.stdout) if proc.returncode == 0 else []


def tree_of(repo: Path, branch: str | None) -> str | None:
    if not branch:
        return None
    proc = subprocess.run(
        ["git", "rev-parse", f"{branch}^{{tree}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def store_truth(home: Path) -> list[str]:
    db = home / "orchestrator.db"
    return untrue(db, home) if db.exists() else []


def first_line_id(proc: subprocess.Popen[str]) -> str | None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    parts = line.split()
    return parts[1] if len(parts) >= 2 and parts[0] == "run" else None


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def resume_until_done(
    home: Path, run_id: str, deadline_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """Resume once the dead process's lease has lapsed (retrying while it is still held)."""
    deadline = time.monotonic() + deadline_s
    while True:
        proc = cli(home, "resume", run_id, "--headless", "--yes", timeout=deadline_s, **FAST)
        if "still running" not in proc.stderr and "being executed by" not in proc.stderr:
            return proc
        if time.monotonic() > deadline:
            return proc
        time.sleep(1)


def root() -> bool:
    return os.geteuid() == 0


@contextmanager
def mounted(*args: str, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


# ---- cases -----------------------------------------------------------------------------------------


def case_kill(work: Path, points: int, seed: int) -> Outcome:
    """kill -9 at random moments of a run (and of some resumes); every run must resume to the
    exact tree of an uninterrupted run."""
    out = Outcome(f"kill -9 at {points} random points")
    rng = random.Random(seed)
    ref_home, home = work / "kill-ref", work / "kill-home"
    repo = prepare_demo_repo(work / "kill-demo")
    start = time.monotonic()
    ref = cli(ref_home, *run_args(repo), timeout=600)
    duration = time.monotonic() - start
    if ref.returncode != 0:
        out.failures.append(f"the uninterrupted reference run failed: {ref.stderr[-300:]}")
        return out
    ref_id = ref.stdout.split()[1]
    reference = tree_of(repo, show(ref_home, ref_id).get("branch"))
    for i in range(points):
        problems: list[str] = []
        proc = spawn(home, *run_args(repo), **FAST)
        run_id = first_line_id(proc)
        time.sleep(rng.uniform(0.0, duration * 0.9))
        proc.kill()
        proc.communicate()
        if run_id is None:
            out.record([f"point {i}: the run never started"])
            continue
        if rng.random() < 0.3:  # kill the resume as well
            time.sleep(2.5)  # the killed process's 2 s lease lapses, so this resume really runs
            again = spawn(home, "resume", run_id, "--headless", "--yes", **FAST)
            time.sleep(rng.uniform(0.0, duration * 0.6))
            again.kill()
            again.communicate()
        done = resume_until_done(home, run_id)
        doc = show(home, run_id)
        if doc.get("status") != "completed":
            problems.append(
                f"point {i}: {doc.get('status')} after resume ({done.stderr.strip()[-200:]})"
            )
        elif tree_of(repo, doc.get("branch")) != reference:
            problems.append(f"point {i}: resumed tree differs from the uninterrupted run")
        # The home is shared by every point: only what is untrue of this run counts here.
        problems += [f"point {i}: {p}" for p in store_truth(home) if run_id in p]
        out.record(problems)
    return out


def case_sixteen(work: Path, processes: int, rounds: int) -> Outcome:
    """N headless runs in N processes on a fresh home (hashing embedder): whatever fails must fail
    with a stored error and no traceback."""
    out = Outcome(f"{processes} processes on a fresh home x{rounds}")
    for r in range(rounds):
        home = work / f"many-{r}"
        repos = [prepare_demo_repo(work / f"many-{r}-demo-{i}") for i in range(processes)]
        procs = [spawn(home, *run_args(repo)) for repo in repos]
        results = [p.communicate(timeout=1800) for p in procs]
        for proc, (stdout, stderr) in zip(procs, results, strict=True):
            problems = []
            if "Traceback" in stderr:
                problems.append("a traceback: " + stderr.strip().splitlines()[-1][:160])
            run_id = stdout.split()[1] if stdout.startswith("run ") else None
            if run_id is None:
                problems.append(f"no run stored (exit {proc.returncode}): {stderr.strip()[-160:]}")
            else:
                doc = show(home, run_id)
                if doc["status"] not in ("completed", "failed") or (
                    doc["status"] == "failed" and not doc.get("error")
                ):
                    problems.append(f"run {run_id} left {doc['status']} ({doc.get('error')})")
            out.record(problems)
        for p in store_truth(home):
            out.failures.append(p)
    return out


PLUGIN = """
class Boom:
    name = "boom"

    async def execute(self, job, log):
        raise RuntimeError("plugin exploded on purpose")


def make(config, llm, model=None):
    return Boom()
"""


def case_plugin(work: Path) -> Outcome:
    """An executor registered through the entry point raises a foreign exception."""
    out = Outcome("plugin executor raises")
    plugins = work / "plugins"
    info = plugins / "boom_exec-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-exec\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[orchestrator.executors]\nboom = boom_exec:make\n")
    (plugins / "boom_exec.py").write_text(PLUGIN)
    home, repo = work / "plugin-home", prepare_demo_repo(work / "plugin-demo")
    proc = cli(
        home,
        *run_args(repo),
        timeout=600,
        PYTHONPATH=f"{ROOT}{os.pathsep}{plugins}",
        ORCHESTRATOR__EXECUTION__EXECUTOR="boom",
    )
    problems = []
    if "Traceback" in proc.stderr:
        problems.append("a traceback: " + proc.stderr.strip().splitlines()[-1][:160])
    run_id = proc.stdout.split()[1] if proc.stdout.startswith("run ") else None
    if run_id is None:
        problems.append(f"no run: {proc.stderr.strip()[-200:]}")
    else:
        doc = show(home, run_id)
        if doc["status"] != "failed" or "plugin exploded" not in (doc.get("error") or ""):
            problems.append(f"run {doc['status']} with error {doc.get('error')!r}")
    out.record(problems + store_truth(home))
    return out


def _waiting_run(home: Path, repo: Path) -> tuple[subprocess.Popen[str], str | None, bool]:
    """A run (no --yes) that waits for its risk approval."""
    proc = spawn(home, *run_args(repo, yes=False), **FAST)
    run_id = first_line_id(proc)
    waiting = run_id is not None and wait_for(
        lambda: (
            cli(home, "interventions", "--run", run_id, "--pending", "--json").stdout.strip()
            not in ("", "[]")
        ),
        180,
    )
    return proc, run_id, waiting


def case_cancel_waiting(work: Path) -> Outcome:
    out = Outcome("cancel of a waiting run")
    home, repo = work / "cancel-home", prepare_demo_repo(work / "cancel-demo")
    proc, run_id, waiting = _waiting_run(home, repo)
    problems = []
    if not waiting or run_id is None:
        proc.kill()
        out.record(["the run never waited for an approval"])
        return out
    cancel = cli(home, "cancel", run_id)
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        problems.append("the run's process did not stop after cancel")
    doc = show(home, run_id)
    if cancel.returncode != 0:
        problems.append(f"cancel said: {cancel.stderr.strip()[:160]}")
    if doc["status"] != "cancelled":
        problems.append(f"run {doc['status']} after cancel")
    pending = [i for i in doc.get("interventions", []) if i["status"] == "pending"]
    if pending:
        problems.append(f"{len(pending)} intervention(s) still pending in the cancelled run")
    out.record(problems + store_truth(home))
    return out


def case_kill_waiting(work: Path) -> Outcome:
    out = Outcome("kill -9 of a waiting run")
    home, repo = work / "killwait-home", prepare_demo_repo(work / "killwait-demo")
    proc, run_id, waiting = _waiting_run(home, repo)
    if not waiting or run_id is None:
        proc.kill()
        out.record(["the run never waited for an approval"])
        return out
    proc.kill()
    proc.communicate()
    listed = lambda: next((r["status"] for r in runs_json(home) if r["id"] == run_id), None)
    problems = []
    if not wait_for(lambda: listed() == "interrupted", 20):
        problems.append(f"`runs` still says {listed()} 20 s after its process died")
    out.record(problems + store_truth(home))
    return out


def case_hostile_ids(work: Path) -> Outcome:
    out = Outcome("hostile plan ids")
    tag = f"{os.getpid()}-{random.randrange(10**6)}"
    outside = [f"/tmp/faults-x-{tag}", f"/tmp/faults-pwned-{tag}"]
    for n, ids in enumerate(
        (
            [outside[0]],
            ["..", "ok"],
            [f"a;touch {outside[1]}"],
            ["a" * 300],
            ["$(touch " + outside[1] + ")"],
        )
    ):
        home, repo = work / f"hostile-home-{n}", small_repo(work / f"hostile-repo-{n}")
        cassette = cassette_file(
            work / f"hostile-{n}.jsonl",
            [plan_phase(i) for i in ids],
            {i: new_file_edit(f"f{n}.txt") for i in ids},
        )
        proc = cli(
            home,
            *run_args(repo, cassette=cassette),
            timeout=600,
            ORCHESTRATOR__VERIFICATION__TEST='["true"]',
        )
        problems = []
        leaked = [p for o in outside for p in glob.glob(o + "*")]
        if leaked:
            problems.append(f"ids {ids[0][:30]!r}: wrote outside the home: {leaked}")
            for p in leaked:
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)
        if "Traceback" in proc.stderr:
            problems.append("a traceback: " + proc.stderr.strip().splitlines()[-1][:160])
        run_id = proc.stdout.split()[1] if proc.stdout.startswith("run ") else None
        if run_id is not None:
            doc = show(home, run_id)
            if doc["status"] == "failed" and not doc.get("error"):
                problems.append(f"ids {ids[0][:30]!r}: failed without an error")
        out.record(problems + store_truth(home))
    return out


def case_big_output(work: Path, megabytes: int) -> Outcome:
    out = Outcome(f"{megabytes} MB step output")
    home, repo = work / "big-home", small_repo(work / "big-repo")
    cassette = cassette_file(work / "big.jsonl", [plan_phase("p1")], {"p1": new_file_edit("f.txt")})
    command = f"python3 -c \"import sys; sys.stdout.write('x' * {megabytes * 1_000_000})\""
    proc = cli(
        home,
        *run_args(repo, cassette=cassette),
        timeout=900,
        ORCHESTRATOR__VERIFICATION__TEST=json.dumps([command]),
    )
    problems = []
    run_id = proc.stdout.split()[1] if proc.stdout.startswith("run ") else None
    if run_id is None:
        problems.append(f"no run: {proc.stderr.strip()[-200:]}")
    else:
        with closing(sqlite3.connect(home / "orchestrator.db")) as db:
            (events,) = db.execute(
                "SELECT COALESCE(SUM(LENGTH(message)), 0) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()
        if events > 1_000_000:
            problems.append(
                f"{events / 1e6:.1f} MB of events stored for the run (cap: 256 KB per step)"
            )
        log = home / "artifacts" / run_id / "run.log"
        if log.exists() and log.stat().st_size > 1_000_000:
            problems.append(f"run.log is {log.stat().st_size / 1e6:.1f} MB")
        used = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
        if used > megabytes * 1_000_000 * 1.3:
            problems.append(f"the home grew to {used / 1e6:.0f} MB for {megabytes} MB of output")
    out.record(problems + store_truth(home))
    return out


def _source_home(work: Path) -> Path:
    """A home holding a failed run (the plugin case's), made when that case did not run."""
    home = work / "plugin-home"
    if not (home / "orchestrator.db").exists():
        case_plugin(work)
    return home


def case_read_only(work: Path, source_home: Path) -> Outcome:
    out = Outcome("read-only home")
    if not root():
        out.skipped = "needs root for a read-only bind mount"
        return out
    with mounted("--bind", str(source_home), target=work / "ro") as ro:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        runs = runs_json(ro)
        for args in (["runs", "--json"], ["interventions", "--json"], ["runs"]):
            proc = cli(ro, *args)
            out.record(
                [f"`{' '.join(args)}` exit {proc.returncode}: {proc.stderr.strip()[-160:]}"]
                if proc.returncode != 0 or "Traceback" in proc.stderr
                else []
            )
        for run in runs[:1]:
            for args in (["show", run["id"], "--json"], ["export", run["id"], "--format", "json"]):
                proc = cli(ro, *args)
                out.record([f"`{args[0]}` exit {proc.returncode}"] if proc.returncode != 0 else [])
        for args in (
            ["run", "x", "--repo", str(work)],
            ["index", str(work)],
            ["search", "x", "--repo", str(work)],
            ["verify", str(work)],
        ):
            proc = cli(ro, *args)
            good = (
                proc.returncode == 1
                and "not writable" in proc.stderr
                and "Traceback" not in proc.stderr
            )
            said = f"`{args[0]}` on a read-only home: exit {proc.returncode} "
            out.record([] if good else [said + proc.stderr.strip()[-160:]])
    # A run that is only in the -wal file, with no -shm: reads must still see it.
    wal_home = work / "wal-home"
    shutil.rmtree(wal_home, ignore_errors=True)
    shutil.copytree(source_home, wal_home, ignore=shutil.ignore_patterns("worktrees", "indexes"))
    from tests.faultkit import run_only_in_the_wal

    in_wal = run_only_in_the_wal(wal_home)
    with mounted("--bind", str(wal_home), target=work / "ro-wal") as ro:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        seen = {r["id"] for r in runs_json(ro)}
        out.record([] if in_wal in seen else [f"run {in_wal}, only in the WAL, not listed"])
    return out


def case_disk_full(work: Path) -> Outcome:
    out = Outcome("disk full on a small tmpfs")
    if not root():
        out.skipped = "needs root to mount a tmpfs"
        return out
    with mounted("-t", "tmpfs", "-o", "size=12m", "tmpfs", target=work / "small") as small:
        home = small / "home"
        repo = prepare_demo_repo(work / "full-demo")
        cli(home, "runs")
        filler = small / "filler"
        filler.write_bytes(b"\0" * max(shutil.disk_usage(small).free - 400 * 1024, 0))
        proc = cli(home, *run_args(repo), timeout=600)
        problems = []
        if "Traceback" in proc.stderr:
            problems.append("a traceback: " + proc.stderr.strip().splitlines()[-1][:160])
        run_id = proc.stdout.split()[1] if proc.stdout.startswith("run ") else None
        if run_id is None:
            problems.append(f"no run: {proc.stderr.strip()[-200:]}")
        else:
            doc = show(home, run_id)
            hint = f"then `orchestrator resume {run_id}`"
            if doc["status"] != "interrupted":
                problems.append(f"run {doc['status']} on a full disk (expected interrupted)")
            if hint not in (doc.get("error") or "") or hint not in proc.stderr:
                problems.append(f"no free-space hint stored and printed: {doc.get('error')!r}")
            filler.unlink()
            done = resume_until_done(home, run_id)
            if show(home, run_id)["status"] != "completed":
                problems.append(f"resume after freeing space: {done.stderr.strip()[-200:]}")
        out.record(problems + store_truth(home))
    return out


def case_truncated(work: Path, source_home: Path) -> Outcome:
    out = Outcome("truncated database")
    home = work / "truncated-home"
    shutil.copytree(source_home, home, symlinks=True)
    db = home / "orchestrator.db"
    ids = {r["id"] for r in runs_json(home)}
    with open(db, "r+b") as f:
        f.truncate(max(db.stat().st_size - 4096, 4096))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    proc = cli(home, "runs")
    problems = []
    if proc.returncode != 1 or "is damaged" not in proc.stderr or "doctor --fix" not in proc.stderr:
        problems.append(
            f"`runs` on a truncated database: exit {proc.returncode} {proc.stderr.strip()[-200:]}"
        )
    fix = cli(home, "doctor", "--fix")
    if fix.returncode != 0:
        problems.append(f"doctor --fix exit {fix.returncode}: {fix.stdout.strip()[-200:]}")
    after = {r["id"] for r in runs_json(home)}
    if not after and ids:
        problems.append(f"no run recovered of {len(ids)}")
    out.record(problems + untrue(home / "orchestrator.db"))  # a copy: its paths name the source
    return out


def case_clean(work: Path, phases: int) -> Outcome:
    """`clean` of a finished run with many phases (worktrees, branches, index folders, report
    folders made through the project's git helpers); prints how long it took."""
    import asyncio

    from config.paths import Paths
    from core.engine import Engine
    from tests.faultkit import finished_run_with_phases

    out = Outcome(f"clean of a {phases}-phase run")
    paths, repo = Paths(work / "clean-home"), small_repo(work / "clean-repo")

    async def scenario() -> float:
        async with await Engine.open(paths) as engine:
            built = time.monotonic()
            await finished_run_with_phases(paths, engine.store, repo, phases)
            print(f"  built {phases} worktrees and branches in {time.monotonic() - built:.1f} s")
            start = time.monotonic()
            await engine.clean()
            return time.monotonic() - start

    seconds = asyncio.run(scenario())
    out.case += f" ({seconds:.1f} s)"
    left = subprocess.run(
        ["git", "branch", "--list", "orchestrator/*"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    problems = [f"{len(left)} branch(es) left"] if left else []
    if any(paths.worktrees.iterdir()):
        problems.append("worktree folders left")
    if list(paths.indexes.glob("*/*/catalog.sqlite")):
        problems.append("index folders left")
    out.record(problems)
    return out


# ---- main ------------------------------------------------------------------------------------------


def print_table(outcomes: list[Outcome]) -> None:
    print(f"\n{'case':<40} {'runs':>5} {'passed':>7}  what stayed untrue")
    for o in outcomes:
        if o.skipped:
            print(f"{o.case:<40} {'-':>5} {'-':>7}  skipped: {o.skipped}")
            continue
        first, *rest = o.failures or [""]
        print(f"{o.case:<40} {o.runs:>5} {o.passed:>7}  {first}")
        for line in rest[:8]:
            print(f"{'':<55}{line}")
        if len(rest) > 8:
            print(f"{'':<55}... and {len(rest) - 8} more")


CASES = (
    "clean",
    "kill",
    "sixteen",
    "plugin",
    "cancel",
    "killwait",
    "hostile",
    "bigout",
    "readonly",
    "diskfull",
    "truncated",
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few of each case (minutes, not an hour)"
    )
    parser.add_argument("--only", help="comma-separated cases: " + ",".join(CASES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder and print it")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(CASES)
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    outcomes: list[Outcome] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        steps: dict[str, Callable[[], Outcome]] = {
            "clean": lambda: case_clean(work, 50 if args.quick else 500),
            "kill": lambda: case_kill(work, 6 if args.quick else 50, args.seed),
            "sixteen": lambda: case_sixteen(work, 4 if args.quick else 16, 1 if args.quick else 2),
            "plugin": lambda: case_plugin(work),
            "cancel": lambda: case_cancel_waiting(work),
            "killwait": lambda: case_kill_waiting(work),
            "hostile": lambda: case_hostile_ids(work),
            "bigout": lambda: case_big_output(work, 5 if args.quick else 50),
            "readonly": lambda: case_read_only(work, _source_home(work)),
            "diskfull": lambda: case_disk_full(work),
            "truncated": lambda: case_truncated(work, _source_home(work)),
        }
        for name in chosen:
            start = time.monotonic()
            try:
                outcome = steps[name]()
            except Exception as exc:  # noqa: BLE001 - a broken case is a row, not the end of the table
                outcome = Outcome(
                    name, failures=[f"the case itself failed: {type(exc).__name__}: {exc}"]
                )
            outcomes.append(outcome)
            print(
                f"{outcome.case}: {outcome.passed}/{outcome.runs} passed in {time.monotonic() - start:.0f} s",
                flush=True,
            )
    finally:
        print_table(outcomes)
        if args.keep:
            print(f"\nwork folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(o.passed == o.runs and not o.failures for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
