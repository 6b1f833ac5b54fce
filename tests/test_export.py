"""The run document (JSON contract) and its Markdown rendering, for a run built through the store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import NotFoundError
from core.records import Category, FindingIn, FindingStatus, PhaseStatus, RunStatus, Severity
from core.reports.document import run_document
from core.reports.markdown import render_markdown
from core.state.store import StateStore

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    """A fresh store in a temporary directory."""
    async with await StateStore.open(tmp_path / "state.db") as s:
        yield s


async def build_run(store: StateStore, tmp_path: Path) -> str:
    """A finished run with two phases, retries, findings, an intervention, usage and an artifact."""
    run = await store.create_run("Add a --version flag", str(tmp_path / "repo"), {"x": 1})
    await store.update_run_status(run.id, RunStatus.PLANNING)
    await store.set_run_git(run.id, "f" * 40, "orchestrator/" + run.id, tmp_path / "wt")
    plan = [
        {
            "id": "phase-001",
            "name": "Parse flag",
            "description": "argparse",
            "dependencies": [],
            "estimated_complexity": "low",
            "risk_level": "low",
            "verification_criteria": ["tests"],
        },
        {
            "id": "phase-002",
            "name": "Print | version",
            "description": "print it",
            "dependencies": ["phase-001"],
            "estimated_complexity": "medium",
            "risk_level": "high",
            "verification_criteria": ["cli prints version"],
        },
    ]
    one, two = await store.save_plan(run.id, plan, 3)
    await store.update_run_status(run.id, RunStatus.EXECUTING)
    await store.update_phase_status(one.id, PhaseStatus.IN_PROGRESS)
    e1 = await store.create_execution(one.id, run.id)
    await store.add_finding(
        run.id,
        one.id,
        e1.id,
        FindingIn(
            Category.TEST,
            Severity.MAJOR,
            "pytest",
            "test_version failed",
            rule="test_version",
            path="tests/test_cli.py",
            line=12,
        ),
    )
    await store.fail_execution(e1.id, "tests failed")
    e2 = await store.create_execution(one.id, run.id)
    await store.complete_execution(e2.id, "done")
    await store.update_phase_status(one.id, PhaseStatus.COMPLETED, commit=SHA)
    await store.add_finding(
        run.id, two.id, None, FindingIn(Category.LINT, Severity.MINOR, "ruff", "unused import")
    )
    fixed = await store.add_finding(
        run.id, two.id, None, FindingIn(Category.LINT, Severity.MEDIUM, "ruff", "too complex")
    )
    await store.update_finding_status(fixed.id, FindingStatus.RESOLVED)
    item = await store.create_intervention(
        run.id, two.id, "risk", "phase-002 is high risk", "approve runs the phase"
    )
    await store.resolve_intervention(item.id, approve=False, note="not today")
    await store.update_phase_status(two.id, PhaseStatus.SKIPPED, error="rejected by the user")
    await store.record_usage(run.id, None, None, "planner", "ollama", "qwen", 1200, 300, 900, False)
    await store.record_usage(
        run.id, one.id, e1.id, "executor", "ollama", "qwen", 800, 200, 500, False
    )
    summary = tmp_path / "summary.md"
    summary.write_text("summary\n")
    await store.add_artifact(run.id, None, "summary.md", summary, "summary")
    await store.update_run_status(run.id, RunStatus.COMPLETED)
    return run.id


async def test_run_document_fields(store: StateStore, tmp_path: Path) -> None:
    run_id = await build_run(store, tmp_path)
    doc = await run_document(store, run_id)
    json.dumps(doc)  # plain JSON data only
    assert doc["id"] == run_id and doc["status"] == "completed"
    assert doc["repo"] == str(tmp_path / "repo") and Path(doc["repo"]).is_absolute()
    assert doc["task"] == "Add a --version flag" and doc["base_commit"] == "f" * 40
    assert doc["branch"] == "orchestrator/" + run_id and doc["error"] is None
    for key in ("created_at", "started_at", "completed_at"):
        assert doc[key].endswith("Z")

    one, two = doc["phases"]
    assert set(one) == {
        "id",
        "plan_id",
        "name",
        "description",
        "status",
        "dependencies",
        "estimated_complexity",
        "risk_level",
        "verification_criteria",
        "attempts",
        "commit",
        "started_at",
        "completed_at",
        "duration_seconds",
        "error",
    }
    assert (one["plan_id"], one["status"], one["attempts"], one["commit"]) == (
        "phase-001",
        "completed",
        2,
        SHA,
    )
    assert isinstance(one["duration_seconds"], float) and one["duration_seconds"] >= 0
    assert two["dependencies"] == ["phase-001"] and two["risk_level"] == "high"
    assert (two["status"], two["commit"], two["attempts"]) == ("skipped", None, 0)
    assert two["error"] == "rejected by the user" and two["duration_seconds"] is None

    assert [(e["attempt"], e["status"]) for e in doc["executions"]] == [
        (1, "failed"),
        (2, "succeeded"),
    ]
    assert set(doc["executions"][0]) == {
        "id",
        "phase_id",
        "attempt",
        "status",
        "error",
        "started_at",
        "completed_at",
    }
    major = doc["findings"][0]
    assert major["location"] == "tests/test_cli.py:12" and major["column"] is None
    assert major["execution_id"] == doc["executions"][0]["id"] and major["status"] == "new"
    assert len(major["fingerprint"]) == 16
    assert doc["findings"][1]["location"] is None
    assert doc["findings"][2]["status"] == "resolved" and doc["findings"][2]["resolved_at"]

    (item,) = doc["interventions"]
    assert (item["kind"], item["status"], item["note"], item["run_id"]) == (
        "risk",
        "rejected",
        "not today",
        run_id,
    )
    assert doc["artifacts"] == [
        {
            "name": "summary.md",
            "path": str(tmp_path / "summary.md"),
            "type": "summary",
            "size": 8,
            "hash": doc["artifacts"][0]["hash"],
        }
    ]
    assert doc["usage"]["planner"] == {"prompt_tokens": 1200, "completion_tokens": 300, "calls": 1}
    fs = doc["findings_summary"]
    assert (fs["major"], fs["medium"], fs["minor"], fs["total_open"]) == (1, 0, 1, 2)


async def test_markdown_report(store: StateStore, tmp_path: Path) -> None:
    run_id = await build_run(store, tmp_path)
    doc: dict[str, Any] = await run_document(store, run_id)
    md = render_markdown(doc)
    assert md.startswith(f"# Run {run_id}: completed\n")
    assert "**Task:** Add a --version flag" in md
    assert "## Plan" in md and "**phase-002: Print | version** (risk high" in md
    assert "depends on phase-001" in md and "High-risk phases: phase-002." in md
    assert "| phase-001 Parse flag | completed | 2 |" in md
    assert "Print \\| version" in md  # pipes inside table cells are escaped
    assert f"`{SHA[:12]}`" in md and f"- phase-001: `{SHA}`" in md
    assert "### Major (1)" in md and "`tests/test_cli.py:12`: test_version failed" in md
    assert "### Minor (1)" in md and "### Medium (1)" in md
    assert "Open: 2 (1 major, 0 medium, 1 minor); 3 recorded in total." in md
    assert "## Interventions" in md
    assert "| phase-002 | risk | rejected | phase-002 is high risk | not today |" in md
    assert "| planner | 1 | 1200 | 300 |" in md and "| **total** | 2 | 2000 | 500 |" in md
    assert "- summary.md (summary, 8 bytes)" in md


async def test_empty_run_renders_and_unknown_run_raises(store: StateStore, tmp_path: Path) -> None:
    run = await store.create_run("nothing yet", str(tmp_path), {})
    doc = await run_document(store, run.id)
    assert doc["phases"] == [] and doc["usage"] == {} and doc["started_at"] is None
    md = render_markdown(doc)
    assert "No plan was made." in md and "## Interventions" not in md
    with pytest.raises(NotFoundError):
        await run_document(store, "rmissing")
