"""The demo's shipped sample repository and cassette are consistent, checked without the engine.

The replay is simulated here: each phase's executor answers are applied, with a small applier
written in this file, to a fresh copy of the phase's starting state, and the sample's own
unittest suite decides whether the attempt passed, just as the real run's verification does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

DEMO = Path(__file__).resolve().parent.parent / "core" / "demo"
SAMPLE = DEMO / "sample"
CASSETTE = DEMO / "cassette.jsonl"

ENTRY_KEYS = {"role", "phase", "attempt", "repair", "request", "response"}
RISKS = {"low", "medium", "high", "critical"}
COMPLEXITIES = {"low", "medium", "high"}


# ----------------------------------------------------------------------------- helpers


def _entries() -> list[dict]:
    return [json.loads(line) for line in CASSETTE.read_text(encoding="utf-8").splitlines() if line]


def _plan() -> list[dict]:
    (planner,) = [e for e in _entries() if e["role"] == "planner"]
    return json.loads(planner["response"]["content"])["phases"]


def _attempts(phase: str) -> list[tuple[int, str]]:
    """(attempt, content) of every executor entry for a phase, in attempt order."""
    found = [
        (e["attempt"], e["response"]["content"])
        for e in _entries()
        if e["role"] == "executor" and e["phase"] == phase and e["repair"] == 0
    ]
    return sorted(found)


def _replay_pick(phase: str, attempt: int) -> str:
    """The content replay answers with: the entry with the highest attempt <= the requested one."""
    eligible = [(a, c) for a, c in _attempts(phase) if a <= attempt]
    assert eligible, f"no cassette entry for {phase} attempt {attempt}"
    return max(eligible)[1]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _run_tests(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-q"],
        cwd=repo,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def _blocks(text: str) -> list[tuple[str, str, str]]:
    """(path, search, replace) for each SEARCH/REPLACE block; the path is the line before the fence."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i] != "<<<<<<< SEARCH":
            i += 1
            continue
        assert lines[i - 1].startswith("```"), f"SEARCH at line {i + 1} is not right after a fence"
        path = lines[i - 2].strip()
        sections: list[list[str]] = [[], []]
        part = 0
        i += 1
        while lines[i] != ">>>>>>> REPLACE":
            if lines[i] == "=======":
                part += 1
            else:
                sections[part].append(lines[i])
            i += 1
        assert part == 1, f"block for {path} needs exactly one '=======' divider"
        search, replace = ("".join(line + "\n" for line in s) for s in sections)
        blocks.append((path, search, replace))
        i += 1
    return blocks


def _apply(repo: Path, text: str) -> set[str]:
    """Apply every block by exact match (empty SEARCH creates the file); returns the paths touched."""
    blocks = _blocks(text)
    assert blocks, "answer holds no SEARCH/REPLACE blocks"
    touched = set()
    for path, search, replace in blocks:
        target = repo / path
        if not search:
            assert not target.exists(), f"{path}: empty SEARCH but the file already exists"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(replace, encoding="utf-8")
        else:
            content = target.read_text(encoding="utf-8")
            assert content.count(search) == 1, f"{path}: SEARCH must match exactly once:\n{search}"
            target.write_text(content.replace(search, replace, 1), encoding="utf-8")
        touched.add(path)
    return touched


def _topological(phases: list[dict]) -> list[dict]:
    done: set[str] = set()
    order: list[dict] = []
    pending = list(phases)
    while pending:
        ready = [p for p in pending if set(p["dependencies"]) <= done]
        assert ready, "the plan has a dependency cycle"
        for p in ready:
            order.append(p)
            done.add(p["id"])
            pending.remove(p)
    return order


# ----------------------------------------------------------------------------- shipped assets


def test_sample_tests_pass_as_shipped(tmp_path: Path) -> None:
    repo = _copy(SAMPLE, tmp_path / "sample")
    result = _run_tests(repo)
    assert result.returncode == 0, result.stderr
    assert (SAMPLE / ".gitignore").read_text().splitlines()[0] == "__pycache__/"


def test_sample_config_is_the_demo_config() -> None:
    config = yaml.safe_load((SAMPLE / "orchestrator.yaml").read_text())
    assert config["verification"]["test"] == ["python3 -m unittest discover -s tests -q"]
    assert config["execution"]["max_parallel_phases"] == 2
    assert config["execution"]["max_attempts"] >= 2  # phase-002 needs a second attempt
    assert config["execution"]["approval_risk_level"] == "high"


def test_cassette_lines_are_well_formed() -> None:
    entries = _entries()
    assert entries
    for entry in entries:
        assert set(entry) == ENTRY_KEYS
        assert entry["role"] in {"planner", "executor"}
        assert entry["repair"] == 0 and entry["request"] is None
        response = entry["response"]
        assert isinstance(response["content"], str) and response["content"].strip()
        for key in ("prompt_tokens", "completion_tokens"):
            assert isinstance(response[key], int) and response[key] > 0
        if entry["role"] == "planner":
            assert entry["phase"] is None and entry["attempt"] is None
        else:
            assert isinstance(entry["phase"], str) and isinstance(entry["attempt"], int)
            assert entry["attempt"] >= 1
            assert not response["content"].startswith("inventory/"), "expected prose first"
    keys = [(e["role"], e["phase"], e["attempt"], e["repair"]) for e in entries]
    assert len(keys) == len(set(keys)), "duplicate cassette entries"


def test_plan_has_a_parallel_dependency_graph_and_a_high_risk_phase() -> None:
    phases = _plan()
    assert len(phases) >= 3
    ids = [p["id"] for p in phases]
    assert len(ids) == len(set(ids))
    for phase in phases:
        assert phase["name"] and phase["description"]
        assert set(phase["dependencies"]) <= set(ids) - {phase["id"]}
        assert phase["estimated_complexity"] in COMPLEXITIES
        assert phase["risk_level"] in RISKS
        assert phase["verification_criteria"] and all(
            isinstance(c, str) for c in phase["verification_criteria"]
        )
    _topological(phases)  # no cycle
    assert any(p["dependencies"] for p in phases)
    assert any(p["risk_level"] in {"high", "critical"} for p in phases)
    dep_sets = [frozenset(p["dependencies"]) for p in phases if p["dependencies"]]
    assert len(dep_sets) != len(set(dep_sets)), "no two dependent phases can run in parallel"
    executor_phases = {e["phase"] for e in _entries() if e["role"] == "executor"}
    assert executor_phases == set(ids), "every phase needs executor answers, and no others"


def test_replay_picks_the_latest_attempt_not_after_the_requested_one() -> None:
    assert _replay_pick("phase-002", 1) == dict(_attempts("phase-002"))[1]
    assert _replay_pick("phase-002", 3) == dict(_attempts("phase-002"))[2]
    assert _replay_pick("phase-001", 2) == dict(_attempts("phase-001"))[1]


# ----------------------------------------------------------------------------- simulated run


def test_simulated_run_fails_once_then_passes_and_merges_cleanly(tmp_path: Path) -> None:
    phases = _topological(_plan())
    finals: dict[str, Path] = {}
    touched: dict[str, set[str]] = {}
    for phase in phases:
        pid = phase["id"]
        # The phase starts from its dependencies' results (one dependency at most in this plan).
        assert len(phase["dependencies"]) <= 1
        start = finals[phase["dependencies"][0]] if phase["dependencies"] else SAMPLE
        attempts = _attempts(pid)
        for n, content in attempts:
            # Every attempt runs on a worktree reset to the phase's start.
            repo = _copy(start, tmp_path / f"{pid}-attempt{n}")
            touched[pid] = _apply(repo, content)
            result = _run_tests(repo)
            last = n == attempts[-1][0]
            assert (result.returncode == 0) == last, (
                f"{pid} attempt {n}: expected {'pass' if last else 'fail'}\n{result.stderr}"
            )
        finals[pid] = repo

    assert [n for n, _ in _attempts("phase-002")] == [1, 2]
    assert [n for n, _ in _attempts("phase-001")] == [1]
    assert [n for n, _ in _attempts("phase-003")] == [1]

    # phase-002 and phase-003 run in parallel from phase-001; they must touch different files.
    assert touched["phase-002"].isdisjoint(touched["phase-003"])
    merged = _copy(finals["phase-001"], tmp_path / "merged")
    for pid in ("phase-002", "phase-003"):
        for rel in touched[pid]:
            (merged / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(finals[pid] / rel, merged / rel)
    result = _run_tests(merged)
    assert result.returncode == 0, result.stderr
    ran = next(line for line in result.stderr.splitlines() if line.startswith("Ran "))
    written = sum(
        f.read_text().count("    def test_") for f in (merged / "tests").glob("test_*.py")
    )
    assert {"test_store.py", "test_export.py", "test_report.py"} <= {
        f.name for f in (merged / "tests").glob("test_*.py")
    }
    assert ran.startswith(f"Ran {written} tests"), ran


# ----------------------------------------------------------------------------- real parser


def test_every_executor_answer_applies_with_the_real_edit_parser(tmp_path: Path) -> None:
    edits = pytest.importorskip("core.executors.edits")
    phases = _topological(_plan())
    finals: dict[str, Path] = {}
    for phase in phases:
        pid = phase["id"]
        start = finals[phase["dependencies"][0]] if phase["dependencies"] else SAMPLE
        for n, content in _attempts(pid):
            ours = _copy(start, tmp_path / f"ours-{pid}-{n}")
            _apply(ours, content)
            theirs = _copy(start, tmp_path / f"real-{pid}-{n}")
            blocks = edits.parse_edit_blocks(content)
            assert [(b.path, b.search, b.replace) for b in blocks] == _blocks(content)
            report = edits.apply_edit_blocks(theirs, blocks)
            assert report.failures == [], f"{pid} attempt {n}: {report.failures}"
            for rel in {b.path for b in blocks}:
                assert (theirs / rel).read_text() == (ours / rel).read_text(), rel
        finals[pid] = theirs
