"""Names from the model are data, never paths: bad plan ids go back to the model, then fail clearly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.errors import UnsafePathError
from core.paths_safe import inside
from core.plan import Plan, PlanValidationError, check_plan, parse_plan, plan_id_problem
from core.records import RunStatus
from tests.cassette import new_file, phase, recorded
from tests.conftest import make_repo

# An absolute path, a climb out, shell characters and a 300-character id.
BAD_IDS = ["/tmp/x", "../../escape", "a;rm -rf x", "$(touch pwned)", "p" * 300]


def _tmp_x() -> set[str]:
    """What /tmp holds named x-something (the id "/tmp/x" once made a worktree /tmp/x)."""
    return {str(p) for p in Path("/tmp").glob("x*")}


def _planner(repair: int, phases: list[dict[str, Any]]) -> dict[str, Any]:
    content = json.dumps({"phases": phases})
    return {
        "role": "planner",
        "phase": None,
        "attempt": None,
        "repair": repair,
        "request": None,
        "response": {"content": content, "prompt_tokens": 10, "completion_tokens": 5},
    }


def _executor(plan_id: str, content: str) -> dict[str, Any]:
    return {
        "role": "executor",
        "phase": plan_id,
        "attempt": 1,
        "repair": 0,
        "request": None,
        "response": {"content": content, "prompt_tokens": 10, "completion_tokens": 5},
    }


def _files(root: Path, skip: tuple[Path, ...]) -> set[str]:
    """Every path below root except those under the folders a run may write to."""
    return {str(p) for p in root.rglob("*") if not any(p == s or p.is_relative_to(s) for s in skip)}


def test_plan_ids_are_checked_with_a_message_per_id(tmp_path: Path) -> None:
    bad = BAD_IDS
    plan = json.dumps({"phases": [phase(pid) for pid in bad] + [phase("phase-001")]})
    with pytest.raises(PlanValidationError) as caught:
        parse_plan(plan)
    message = str(caught.value)
    for number, pid in enumerate(bad[:4], start=1):
        assert f"phase {number}: {pid!r} is not a valid id" in message
    assert f"phase 5: {'p' * 40!r}... (300 characters) is not a valid id" in message
    assert "p" * 41 not in message, "a long id is not quoted whole"
    assert "for example 'phase-001'" in message
    for pid in ("a..b", "x.lock", "end.", "Run", "baseline"):
        assert plan_id_problem(pid) is not None, pid
    assert plan_id_problem("Phase_1.2-b") is None and plan_id_problem("9" * 64) is None
    with pytest.raises(PlanValidationError, match="differ only in case"):
        check_plan(Plan.model_validate({"phases": [phase("Step-1"), phase("step-1")]}))


def test_inside_refuses_what_leaves_the_base(tmp_path: Path) -> None:
    base = tmp_path / "home"
    base.mkdir()
    assert inside(base, "r1", "phase-001") == base / "r1" / "phase-001"
    for parts in (("..",), ("a/../../x",), ("/etc",), ("",), ("a", "..", "..")):
        with pytest.raises(UnsafePathError, match="refusing"):
            inside(base, *parts)
    (base / "link").symlink_to(tmp_path)  # a symlink inside may not lead out
    with pytest.raises(UnsafePathError, match=f"outside {os.path.realpath(base)}"):
        inside(base, "link", "x")


async def test_bad_ids_go_back_to_the_model_and_nothing_is_written_outside(
    home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    bad = BAD_IDS
    bad_plan = [phase(bad[0])] + [phase(pid, [bad[0]]) for pid in bad[1:]]
    good = tmp_path / "good.jsonl"
    lines = [_planner(0, bad_plan), _planner(1, [phase("phase-001")])]
    lines += [_executor(pid, new_file("a.txt", "a\n")) for pid in [*bad, "phase-001"]]
    good.write_text("".join(json.dumps(line) + "\n" for line in lines))
    stubborn = tmp_path / "stubborn.jsonl"
    lines = [_planner(0, bad_plan), _planner(1, bad_plan)]
    lines += [_executor(pid, new_file("a.txt", "a\n")) for pid in bad]
    stubborn.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before, tmp_x = _files(tmp_path, (home, repo)), _tmp_x()
    cwd_before = set(os.listdir())
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})

    def loaded(cassette: Path, record: Path) -> Any:
        cli = {
            "llm.provider": "replay",
            "llm.replay": str(cassette),
            "llm.record": str(record),
            "models.embedder": "hashing-256",
        }
        return load_config(paths, repo=repo, env={}, cli=cli)

    async with await Engine.open(paths) as engine:
        fixed = await engine.start_run(
            "Make a file", repo, loaded(good, home / "good-sent.jsonl"), auto_approve=True
        )
        failed = await engine.start_run(
            "Make a file", repo, loaded(stubborn, home / "stubborn-sent.jsonl"), auto_approve=True
        )
        fixed_phases = [p.plan_id for p in await engine.phases(fixed.id)]
        failed_phases = await engine.phases(failed.id)

    # The repair round carried each id's error; the fixed plan then ran.
    assert fixed.status is RunStatus.COMPLETED, fixed.error
    assert fixed_phases == ["phase-001"]
    sent = recorded(home / "good-sent.jsonl")
    [repair] = [e for e in sent if e["role"] == "planner" and e["repair"] == 1]
    feedback = repair["request"]["messages"][-1]["content"]
    for pid in bad[:4]:
        assert f"{pid!r} is not a valid id" in feedback
    assert "(300 characters) is not a valid id" in feedback
    # A model that repeats the mistake fails the run clearly, with no phase stored.
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None and "after one repair round" in failed.error
    assert "is not a valid id" in failed.error and failed_phases == []
    # Nothing was written outside the home and the repository, nor where the test runs.
    assert _files(tmp_path, (home, repo)) == before
    assert _tmp_x() == tmp_x and set(os.listdir()) == cwd_before
    assert not list(tmp_path.rglob("pwned")) and not list(tmp_path.rglob("escape"))
