"""Lessons from past runs: learned when a run ends, carried into later prompts, forgotten for good."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_config
from config.paths import Paths
from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.engine import Engine
from core.lessons import (
    FINDING_RETURNED,
    FLAKY_CHECK,
    PHASE_FAILED,
    SECTION_TITLE,
    derive_lessons,
    render_section,
)
from core.llm.base import estimate_tokens
from core.llm.replay import cassette_lines
from core.records import (
    Category,
    FindingIn,
    FindingStatus,
    Lesson,
    PhaseStatus,
    RunStatus,
    Severity,
)
from core.state.store import StateStore
from tests.cassette import new_file, phase, write_cassette
from tests.clirun import cli, cli_json
from tests.conftest import make_repo

BUDGET = 400  # lessons.max_tokens as shipped


def _run_demo(home: Path, repo: Path, record: Path, *extra: str) -> str:
    """One replayed demo run on `repo`, recording every model request; returns the run id."""
    proc = cli(
        home,
        "run",
        DEMO_TASK,
        "--repo",
        str(repo),
        "--provider",
        "replay",
        "--replay",
        str(cassette_path()),
        "--record",
        str(record),
        "--headless",
        "--yes",
        *extra,
        check=True,
    )
    return proc.stdout.split()[1]


def _requests(record: Path) -> dict[tuple[str, str | None, int | None], str]:
    """The user message of each recorded request, by (role, phase, attempt)."""
    out = {}
    for _, entry in cassette_lines(record):
        user = [m["content"] for m in entry["request"]["messages"] if m["role"] == "user"]
        out[(entry["role"], entry["phase"], entry["attempt"])] = user[-1]
    return out


def _section(prompt: str) -> str:
    """The Lessons section of a prompt ('' when it has none)."""
    start = prompt.find(SECTION_TITLE)
    return "" if start < 0 else prompt[start:].split("\n\n")[0]


def test_a_failure_reaches_the_next_runs_prompt_until_it_is_forgotten(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = prepare_demo_repo(tmp_path / "repos")
    first = _run_demo(home, repo, tmp_path / "first.jsonl", "--as", "dave")
    [started] = cli_json(home, "show", first)["actions"]  # who-did-what, in passing
    assert (started["action"], started["actor"]) == ("started", "dave")
    # The first run had nothing to learn from; its phase-002 attempt 1 failed its own test.
    assert not any(SECTION_TITLE in p for p in _requests(tmp_path / "first.jsonl").values())

    [lesson] = cli_json(home, "lessons", "--repo", str(repo))
    assert lesson["kind"] == PHASE_FAILED and lesson["runs"] == [first]
    assert lesson["status"] == "active" and 'Phase "Add CSV export"' in lesson["text"]
    assert "\\r\\n" in lesson["text"]  # why it failed: csv.writer's line ends

    second = _run_demo(home, repo, tmp_path / "second.jsonl")
    asked = _requests(tmp_path / "second.jsonl")
    section = _section(asked[("executor", "phase-002", 1)])
    assert f"failed attempt 1 in run {first}" in section and "\\r\\n" in section
    assert "Attempt 2 passed" in section  # and what passed afterwards
    assert estimate_tokens(section) <= BUDGET
    assert _section(asked[("planner", None, None)]) == section  # the planner learns it too

    text = cli(home, "lessons", "show", lesson["id"], check=True).stdout
    assert f"runs:           {first}, {second}" in text and "status:         active" in text
    assert lesson["id"] in cli(home, "lessons", check=True).stdout  # every repository's

    cli(home, "lessons", "forget", lesson["id"], "--as", "carol", check=True)
    gone = cli_json(home, "lessons", "show", lesson["id"])
    assert gone["status"] == "forgotten" and gone["forgotten_by"] == "carol"
    assert gone["runs"] == [] and gone["forgotten_runs"] == [first, second]
    # Learned again from the same runs (as if they ended once more), it stays forgotten.
    again = asyncio.run(_derive_again(home, [first, second]))
    assert {le.id for le in again} == {lesson["id"]} and all(le.forgotten for le in again)
    assert cli_json(home, "lessons", "show", lesson["id"])["status"] == "forgotten"

    third = _run_demo(home, repo, tmp_path / "third.jsonl")
    assert not any(SECTION_TITLE in p for p in _requests(tmp_path / "third.jsonl").values())
    # The third run failed the same way: new evidence brings the lesson back with only that run.
    back = cli_json(home, "lessons", "show", lesson["id"])
    assert back["status"] == "active" and back["runs"] == [third]
    assert back["forgotten_runs"] == [first, second]

    # Who did what, in passing: applying and cleaning a run record who did it.
    cli(home, "apply", third, "--as", "frank", check=True)
    cli(home, "--as", "erin", "clean", third, check=True)
    done = [(a["action"], a["actor"]) for a in cli_json(home, "show", third)["actions"]]
    assert done[1:] == [("applied", "frank"), ("cleaned", "erin")]


async def _derive_again(home: Path, run_ids: list[str]) -> list[Lesson]:
    """derive_lessons on runs already learned from, on the home's store."""
    async with await StateStore.open(home / "orchestrator.db") as store:
        return [le for run_id in run_ids for le in await derive_lessons(store, run_id)]


def _lesson(i: int, subject: str, task: str, text: str) -> Lesson:
    return Lesson(
        id=f"l{i:010d}",
        repo_key="root",
        repo="/repo",
        kind=PHASE_FAILED,
        subject=subject,
        task=task,
        text=text,
        runs=[f"r{i}"],
        forgotten_runs=[],
        forgotten_at=None,
        forgotten_by=None,
        created_at=f"2026-12-0{1 + i % 9}T00:00:00Z",
        updated_at=f"2026-12-0{1 + i % 9}T00:00:00Z",
    )


def test_the_section_keeps_its_token_budget_most_relevant_first() -> None:
    filler = "the tests failed because the fixture database was not migrated; " * 3
    lessons = [
        _lesson(i, f"phase:unrelated step {i}", "Rewrite the billing exporter", filler)
        for i in range(30)
    ]
    lessons.append(
        _lesson(99, "phase:add csv export", "Add a CSV export", "csv.writer writes \\r\\n")
    )
    words = {"csv", "export", "inventory"}
    figures: dict[int, Any] = {}
    for budget in (60, 150, 400, 1000):
        text, used = render_section(lessons, budget, phase_name="Add CSV export", words=words)
        figures[budget] = (estimate_tokens(text), len(used))
        assert estimate_tokens(text) <= budget
        assert used[0].id == "l0000000099"  # the same phase title first
        assert text.splitlines()[1] == "- csv.writer writes \\r\\n"
    assert figures[1000][1] > figures[400][1] > figures[150][1] >= 1
    # One lesson longer than the whole budget is shortened to fit instead of dropped.
    long = [_lesson(1, "phase:x", "t", "word " * 500)]
    text, used = render_section(long, 120, phase_name="x", words=set())
    assert len(used) == 1 and estimate_tokens(text) <= 120 and text.endswith("…")
    assert render_section(long, 0, phase_name="x", words=set()) == ("", [])


FLAKY = """\
import pathlib, sys
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text("failed once")
    print("test_timing failed: the clock moved")
    sys.exit(1)
"""


async def test_a_check_that_passes_on_the_same_files_is_learned_as_flaky(
    home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    script = tmp_path / "flaky_check.py"
    script.write_text(FLAKY)
    # The replay answers attempt 2 with attempt 1's edits: the same files are verified twice.
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001", name="Add notes")],
        {("phase-001", 1): new_file("notes.txt", "n\n")},
    )
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    overrides = {
        "llm.provider": "replay",
        "llm.replay": str(cassette),
        "verification.test": [f"{sys.executable} {script} {tmp_path / 'marker'}"],
        "verification.baseline": False,
        "execution.backoff_base_seconds": 0,
    }
    loaded = load_config(paths, repo=repo, env={}, cli=overrides)
    async with await Engine.open(paths) as engine:
        run = await engine.start_run("Write notes", repo, loaded, auto_approve=True)
        assert run.status is RunStatus.COMPLETED, run.error
        [lesson] = await engine.lessons(repo)
    assert lesson.kind == FLAKY_CHECK and lesson.runs == [run.id]
    assert 'failed attempt 1 of phase "Add notes"' in lesson.text
    assert "passed attempt 2 on exactly the same files" in lesson.text, lesson.text


async def test_lessons_are_redacted_like_everything_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("DEPLOY_API_TOKEN", secret)
    repo = make_repo(tmp_path / "repo")
    async with await StateStore.open(tmp_path / "state.db") as store:
        run = await store.create_run(f"Rotate the key {secret}", repo, {})
        [ph] = await store.save_plan(run.id, [phase("phase-001", name="Rotate keys")], 3)
        attempt = await store.create_execution(ph.id, run.id)
        await store.fail_execution(attempt.id, f"verification failed: auth with {secret} refused")
        [lesson] = await derive_lessons(store, run.id)
        stored = await store.get_lesson(lesson.id)
    assert secret not in stored.text and secret not in stored.task
    assert "auth with *** refused" in stored.text and "Rotate the key ***" in stored.text


async def test_a_finding_that_came_back_is_learned_with_the_commit_that_fixed_it(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    unused = FindingIn(
        category=Category.LINT,
        severity=Severity.MEDIUM,
        tool="ruff",
        rule="F401",
        path="app/util.py",
        line=3,
        message="`os` imported but unused",
    )
    async with await StateStore.open(tmp_path / "state.db") as store:
        run = await store.create_run("Tidy the helpers", repo, {})
        [ph] = await store.save_plan(run.id, [phase("phase-001", name="Tidy helpers")], 3)
        one = await store.create_execution(ph.id, run.id)
        [first] = await store.add_findings(run.id, ph.id, one.id, [unused])
        await store.fail_execution(one.id, "verification failed: lint")
        await store.update_finding_status(first.id, FindingStatus.RESOLVED)  # attempt 2 fixed it
        two = await store.create_execution(ph.id, run.id)
        await store.fail_execution(two.id, "verification failed: a test")
        # The run stops here (interrupted), is learned from, then resumed ...
        [early] = await derive_lessons(store, run.id)
        assert "The phase ended pending after 2 attempt(s)." in early.text
        three = await store.create_execution(ph.id, run.id)  # ... and attempt 3 brought it back
        [again] = await store.add_findings(run.id, ph.id, three.id, [unused])
        await store.update_finding_status(again.id, FindingStatus.RESOLVED)
        await store.complete_execution(three.id, "applied 1 edit block to: app/util.py")
        await store.update_phase_status(ph.id, PhaseStatus.COMPLETED, commit="c0ffee" * 6 + "c0ff")
        learned = {le.kind: le for le in await derive_lessons(store, run.id)}
    returned = learned[FINDING_RETURNED]
    assert returned.subject == f"finding:{first.fingerprint}" and returned.runs == [run.id]
    assert "ruff/F401 app/util.py:3 came back after it was fixed" in returned.text
    assert 'fixed by the commit c0ffeec0ff of phase "Tidy helpers"' in returned.text
    # ... and when it ends again its newer account replaces its own earlier one.
    assert learned[PHASE_FAILED].id == early.id and learned[PHASE_FAILED].runs == [run.id]
    assert "Attempt 3 passed (applied 1 edit block to: app/util.py)" in learned[PHASE_FAILED].text
