"""`orchestrator stats` and `runs --json`: the analytics add up to the listing of the same runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config.paths import Paths
from core.records import AUTO_APPROVED_NOTE, Category, FindingIn, Severity
from core.state.store import StateStore
from tests.clirun import ROOT, cli, cli_env, cli_json
from tests.stats_seed import seed_history


async def _runs_through_the_store(home: Path, repo: Path) -> list[str]:
    """Three runs written through the store API (today's dates): phases, attempts, model calls
    (one answered from the response cache), findings and interventions."""
    async with await StateStore.open(Paths(home).db) as store:
        ids = []
        for n in range(3):
            run = await store.create_run(f"task {n}", repo, {})
            ids.append(run.id)
            phases = await store.save_plan(
                run.id, [{"id": f"phase-{k}", "name": f"step {k}"} for k in range(n + 1)], 3
            )
            for phase in phases:
                first = await store.create_execution(phase.id, run.id)
                await store.add_findings(
                    run.id,
                    phase.id,
                    first.id,
                    [FindingIn(Category.TEST, Severity.MAJOR, "pytest", f"fails {n}")],
                )
                await store.record_usage(
                    run.id, phase.id, first.id, "executor", "openai", "gpt-4o-mini",
                    1000 + n, 200, 12.0, False, cost_usd=0.00125,
                )  # fmt: skip
            await store.record_usage(
                run.id, None, None, "planner", "ollama", "qwen2.5-coder:7b", 700, 90, 5.0, n == 2
            )
            asked = await store.create_intervention(run.id, None, "risk", "risky", "approve?")
            # the first run's question is answered by `--yes`: nobody waited for it
            note = AUTO_APPROVED_NOTE if n == 0 else None
            await store.resolve_intervention(asked.id, approve=n != 1, note=note)
        await store.update_run_status(ids[0], "completed")
        await store.update_run_status(ids[1], "failed", "phase failed")
        return ids


def _sums(runs: list[dict[str, Any]]) -> dict[str, Any]:
    open_findings = {
        sev: sum(r["findings"][sev] for r in runs) for sev in ("major", "medium", "minor")
    }
    return {
        "runs": len(runs),
        "tokens": sum(r["tokens"] for r in runs),
        "cost_usd": sum(r["cost_usd"] for r in runs),
        "phases": sum(r["phases_total"] for r in runs),
        "phases_completed": sum(r["phases_completed"] for r in runs),
        "open_findings": open_findings,
        "statuses": sorted(r["status"] for r in runs),
    }


def _totals(doc: dict[str, Any]) -> dict[str, Any]:
    t = doc["totals"]
    statuses = sorted(s for s, n in t["runs_by_status"].items() for _ in range(n))
    return {
        "runs": t["runs"],
        "tokens": t["tokens"],
        "cost_usd": t["cost_usd"],
        "phases": t["phases"],
        "phases_completed": t["phases_completed"],
        "open_findings": t["open_findings"],
        "statuses": statuses,
    }


async def test_stats_totals_equal_the_sums_over_every_listed_run(
    home: Path, tmp_path: Path
) -> None:
    seed_history(Paths(home).db, runs=130, days=20)
    mine = await _runs_through_the_store(home, tmp_path / "repo")

    listed = cli_json(home, "runs", "--limit", "0")
    doc = cli_json(home, "stats")

    assert len(listed) == 133  # past the default limit of 100
    assert set(mine) <= {r["id"] for r in listed}
    sums, totals = _sums(listed), _totals(doc)
    assert totals["cost_usd"] == pytest.approx(sums.pop("cost_usd"), abs=1e-9)
    totals.pop("cost_usd")
    assert totals == sums
    by_day = doc["runs_per_day"]
    assert sum(d["runs"] for d in by_day) == 133
    assert sum(u["tokens"] for u in doc["usage_per_day"]) == doc["totals"]["tokens"]
    # the cached planner answer counts as a call but adds no tokens
    cached = next(r for r in listed if r["id"] == mine[2])
    assert cached["tokens"] == 3 * 1202 + 0


async def test_filters_select_the_same_runs_as_the_listing(home: Path, tmp_path: Path) -> None:
    seed_history(Paths(home).db, runs=60, days=10)
    repo = tmp_path / "repo"
    mine = await _runs_through_the_store(home, repo)

    recent = cli_json(home, "stats", "--since", "2026-11-16")
    every = cli_json(home, "runs", "--limit", "0")
    since = [r for r in every if r["created_at"] >= "2026-11-16"]
    assert recent["filters"]["since"] == "2026-11-16"
    assert _totals(recent)["runs"] == len(since) and _totals(recent)["tokens"] == sum(
        r["tokens"] for r in since
    )
    assert all(d["day"] >= "2026-11-16" for d in recent["runs_per_day"])

    ours = cli_json(home, "stats", "--repo", str(repo))
    assert ours["totals"]["runs"] == len(mine)
    assert ours["totals"]["runs_by_status"]["completed"] == 1
    assert ours["totals"]["runs_by_status"]["failed"] == 1
    assert ours["totals"]["calls"] == (1 + 2 + 3) + 3
    assert ours["totals"]["findings_by_category"]["test"] == 6
    assert ours["failing_checks"] == [
        {"category": "test", "tool": "pytest", "attempts": 6, "findings": 6, "major": 6}
    ]
    assert ours["attempts_per_phase"] == [{"attempts": 1, "phases": 6, "by_status": {"pending": 6}}]
    waiting = ours["waiting"]
    assert (waiting["asked"], waiting["answered"], waiting["pending"]) == (3, 2, 0)
    assert waiting["auto_approved"] == 1
    assert sum(b["answered"] for b in waiting["buckets"]) == 2
    assert set(waiting["by_kind"]) == {"risk"}


def test_human_output_has_a_section_per_figure(home: Path) -> None:
    seed_history(Paths(home).db, runs=40, days=14)
    out = cli(home, "stats", "--since", "2026-11-14", check=True).stdout
    assert "Analytics of runs created since 2026-11-14 (days in UTC)" in out
    for title in (
        "Runs per day by status",
        "Cost and tokens per day by model and role",
        "Attempts per phase",
        "Findings per day by severity and category",
        "Waiting for a person",
        "Checks that fail most",
    ):
        assert title in out
    assert "2026-11-13" not in out and "2026-11-20" in out


def test_wrong_inputs_say_what_to_give(home: Path) -> None:
    seed_history(Paths(home).db, runs=3, days=2)
    bad = cli(home, "stats", "--since", "last tuesday")
    assert bad.returncode == 2 and "give YYYY-MM-DD" in bad.stderr
    negative = cli(home, "runs", "--limit", "-1")
    assert negative.returncode == 2 and "0 for every run" in negative.stderr
    empty = cli(home, "stats", "--repo", "/nowhere", check=True).stdout
    assert empty.startswith("no runs to count (runs on /nowhere)")


def test_the_benchmark_runs_and_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/stats.py", "--runs", "300", "--days", "10", "--repeat", "1"],
        cwd=ROOT,
        env=cli_env(ROOT / "unused-home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "seeded 300 runs over 10 days" in proc.stdout
    for figure in ("store.stats_rows (SQL):", "`orchestrator stats --json`", "--limit 0"):
        assert figure in proc.stdout
