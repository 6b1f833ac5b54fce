"""A deterministic history of many runs for analytics: the tests, the app's snapshots, the bench.

`seed_history(db, runs=N, days=D)` writes N runs spread over D days ending on END_DAY, each with
phases, attempts, model calls of two models and two roles, findings of several checks and
sometimes an intervention answered minutes or hours later. Everything comes from a seeded
random generator and fixed dates, so the same call writes the same rows on every machine.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.tui.seed import open_db

END_DAY = date(2026, 11, 20)
REPOS = ("/home/dev/src/inventory-service", "/home/dev/src/settings-lib", "/home/dev/src/web-ui")
# status, weight
STATUSES = (("completed", 60), ("failed", 20), ("cancelled", 8), ("interrupted", 7), ("waiting", 5))
# tool, category, severity
CHECKS = (
    ("pytest", "test", "major"),
    ("ruff", "lint", "minor"),
    ("mypy", "lint", "medium"),
    ("bandit", "security", "medium"),
    ("compileall", "build", "major"),
)
MODELS = (("ollama", "qwen2.5-coder:7b", 0.0), ("openai", "gpt-4o-mini", 0.0000006))
KINDS = ("risk", "phase_failed", "budget")


def stamp(value: datetime) -> str:
    """A timestamp in the store's format (core.timeutil.utcnow)."""
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def seed_history(
    db: Path,
    *,
    runs: int = 40,
    days: int = 14,
    end: date = END_DAY,
    seed: int = 7,
    pending: bool = True,
) -> None:
    """Write `runs` runs over the `days` days ending on `end` into the database at `db`; with
    `pending=False` no question is left unanswered (the app would show it at once)."""
    rng = random.Random(seed)
    first = datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(days=days - 1)
    rows: dict[str, list[tuple[Any, ...]]] = {
        t: [] for t in ("runs", "phases", "executions", "llm_usage", "findings", "interventions")
    }
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    for i in range(runs):
        run_id = f"r{seed:02d}{i:08d}"
        start = first + timedelta(days=i * days // runs, minutes=rng.randint(8 * 60, 18 * 60))
        status = rng.choices(statuses, weights)[0]
        n_phases = rng.randint(1, 4)
        clock = start
        finished = status in ("completed", "failed", "cancelled")
        for seq in range(n_phases):
            phase_id = f"p{run_id[1:]}{seq:02d}"
            last = seq == n_phases - 1
            tries = 1 if rng.random() < 0.6 else rng.randint(2, 3)
            if status == "failed" and last:
                tries, phase_status = 3, "failed"
            elif status in ("completed",) or not last:
                phase_status = "completed"
            else:
                phase_status = "in_progress" if status == "waiting" else "pending"
                tries = 0 if status == "cancelled" else 1
            phase_start = clock
            for attempt in range(1, tries + 1):
                execution_id = f"e{phase_id[1:]}{attempt}"
                ok = attempt == tries and phase_status == "completed"
                ends = clock + timedelta(minutes=rng.randint(1, 9))
                running = phase_status == "in_progress" and attempt == tries
                rows["executions"].append(
                    (
                        execution_id,
                        phase_id,
                        run_id,
                        attempt,
                        "running" if running else "succeeded" if ok else "failed",
                        stamp(clock),
                        None if running else stamp(ends),
                    )
                )
                provider, model, price = MODELS[(i + attempt) % 2]
                prompt, completion = rng.randint(800, 4000), rng.randint(100, 1200)
                rows["llm_usage"].append(
                    (
                        f"u{execution_id[1:]}",
                        run_id,
                        phase_id,
                        execution_id,
                        "executor",
                        provider,
                        model,
                        prompt,
                        completion,
                        0,
                        round((prompt + completion) * price, 10),
                        stamp(clock),
                    )
                )
                if not ok and not running:
                    for n, (tool, category, severity) in enumerate(
                        rng.sample(CHECKS, rng.randint(1, 2))
                    ):
                        rows["findings"].append(
                            (
                                f"f{execution_id[1:]}{n}",
                                run_id,
                                phase_id,
                                execution_id,
                                category,
                                severity,
                                tool,
                                f"{tool} reported a problem in attempt {attempt}",
                                f"fp{tool}{i % 17}",
                                "resolved" if phase_status == "completed" else "open",
                                stamp(ends),
                            )
                        )
                clock = ends
            rows["phases"].append(
                (
                    phase_id,
                    run_id,
                    f"phase-{seq + 1:03d}",
                    seq + 1,
                    f"Phase {seq + 1}",
                    phase_status,
                    tries,
                    stamp(start),
                    None if tries == 0 else stamp(phase_start),
                    stamp(clock) if phase_status in ("completed", "failed") else None,
                )
            )
        provider, model, price = MODELS[i % 2]
        prompt, completion = rng.randint(1500, 3000), rng.randint(200, 700)
        rows["llm_usage"].append(
            (
                f"u{run_id[1:]}plan",
                run_id,
                None,
                None,
                "planner",
                provider,
                model,
                prompt,
                completion,
                int(i % 11 == 0),  # now and then an answer from the response cache
                round((prompt + completion) * price, 10),
                stamp(start),
            )
        )
        if rng.random() < 0.35 and (pending or status != "waiting"):
            asked = start + timedelta(minutes=1)
            wait = timedelta(seconds=rng.choice((20, 200, 1500, 5400, 40000)))
            answer = "pending" if status == "waiting" else rng.choice(("approved", "rejected"))
            rows["interventions"].append(
                (
                    f"i{run_id[1:]}",
                    run_id,
                    rng.choice(KINDS),
                    answer,
                    stamp(asked),
                    None if answer == "pending" else stamp(asked + wait),
                )
            )
        rows["runs"].append(
            (
                run_id,
                f"Task number {i} for the analytics seed",
                REPOS[i % len(REPOS)],
                status,
                stamp(start),
                stamp(start),
                stamp(clock) if finished else None,
                stamp(clock),
            )
        )
    _write(db, rows)


def _write(db: Path, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    """Insert the rows in one transaction."""
    conn = open_db(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO runs (id, task, repo, status, created_at, started_at, completed_at,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?)",
            rows["runs"],
        )
        conn.executemany(
            "INSERT INTO phases (id, run_id, plan_id, seq, name, status, attempts, created_at,"
            " started_at, completed_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows["phases"],
        )
        conn.executemany(
            "INSERT INTO executions (id, phase_id, run_id, attempt_number, status, started_at,"
            " completed_at) VALUES (?,?,?,?,?,?,?)",
            rows["executions"],
        )
        conn.executemany(
            "INSERT INTO llm_usage (id, run_id, phase_id, execution_id, role, provider, model,"
            " prompt_tokens, completion_tokens, cached, cost_usd, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows["llm_usage"],
        )
        conn.executemany(
            "INSERT INTO findings (id, run_id, phase_id, execution_id, category, severity, tool,"
            " message, fingerprint, status, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows["findings"],
        )
        conn.executemany(
            "INSERT INTO manual_interventions (id, run_id, kind, reason, status, created_at,"
            " resolved_at) VALUES (?,?,?,'a seeded question',?,?,?)",
            rows["interventions"],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
