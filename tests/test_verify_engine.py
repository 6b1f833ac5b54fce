"""Verification inside runs: real tools per attempt, baseline of the base commit, resolved findings,
feedback in the next prompt, command criteria behind approval, per-category actions, SARIF export."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.events import VerificationCompleted
from core.records import RunStatus
from tests.cassette import new_file, phase, replace, write_cassette
from tests.conftest import make_repo
from tests.waiting import eventually, pending_asks

BASE_APP = "import os\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n"
BASE_TESTS = "from app import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
DOC = '"""Arithmetic helpers."""\n'


def python_repo(root: Path) -> Path:
    return make_repo(
        root,
        {
            "pyproject.toml": "[project]\nname = 'calc'\nversion = '0'\n",
            "app.py": BASE_APP,
            "tests/test_app.py": BASE_TESTS,
        },
    )


def sub_attempt(body: str) -> str:
    """An executor answer: a docstring above everything, sub(), and its test."""
    return (
        replace("app.py", "import os\n", DOC + "import os\n")
        + replace(
            "app.py",
            "    return a + b\n",
            f"    return a + b\n\n\ndef sub(a: int, b: int) -> int:\n    return {body}\n",
        )
        + new_file(
            "tests/test_sub.py",
            "from app import sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n",
        )
    )


async def _engine(home: Path) -> Engine:
    return await Engine.open(Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)}))


def _loaded(home: Path, repo: Path, **cli: Any):
    base = {
        "execution.backoff_base_seconds": 0.01,
        "execution.backoff_max_seconds": 0.02,
        "execution.poll_seconds": 0.05,
    }
    base.update(cli)
    return load_config(
        Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)}), repo=repo, env={}, cli=base
    )


async def test_attempts_with_real_tools_baseline_resolution_and_feedback(
    home: Path, tmp_path: Path, fake_ollama
) -> None:
    repo = python_repo(tmp_path / "repo")
    fake_ollama.models = {"qwen2.5-coder:7b": 32768}
    fake_ollama.chat_answers = [
        json.dumps({"phases": [phase("phase-001", name="Add sub")]}),
        sub_attempt("a + b"),  # wrong: the new test fails
        sub_attempt("a - b"),
    ]
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    loaded = load_config(
        paths,
        repo=repo,
        env={"OLLAMA_HOST": fake_ollama.url},
        cli={"execution.poll_seconds": 0.05, "execution.backoff_base_seconds": 0.01},
    )
    async with await _engine(home) as engine:
        sub = engine.subscribe()
        run = await engine.start_run("Add sub()", repo, loaded)
        await engine.journal.flush()
        events = []
        while (event := sub.get_nowait()) is not None:
            events.append(event)
        doc = await engine.run_document(run.id)
        sarif = json.loads(await engine.export(run.id, "sarif"))
        markdown = await engine.export(run.id, "markdown")
    assert run.status is RunStatus.COMPLETED, run.error

    [baseline] = [f for f in doc["findings"] if f["status"] == "baseline"]
    assert (baseline["tool"], baseline["rule"], baseline["path"], baseline["line"]) == (
        "ruff",
        "F401",
        "app.py",
        1,
    )
    assert baseline["phase_id"] is None and baseline["snippet"] == "import os"
    # Both attempts pushed `import os` down a line; its fingerprint held, so it stayed baseline.
    [failed_test] = [f for f in doc["findings"] if f["status"] != "baseline"]
    assert failed_test["tool"] == "pytest" and failed_test["severity"] == "major"
    assert (failed_test["path"], failed_test["line"]) == ("tests/test_sub.py", 5)
    assert failed_test["status"] == "resolved" and failed_test["resolved_at"]
    assert "AssertionError" in failed_test["details"]
    assert doc["findings_summary"]["total_open"] == 0 and doc["findings_summary"]["baseline"] == 1
    verified = [e for e in events if isinstance(e, VerificationCompleted)]
    assert [(e.phase_id is None, e.findings, e.blocking) for e in verified] == [
        (True, 1, 0),  # the baseline
        (False, 1, 1),  # attempt 1: the failing test
        (False, 0, 0),  # attempt 2
    ]
    attempts = [e for e in doc["executions"]]
    assert [e["status"] for e in attempts] == ["failed", "succeeded"]
    assert "tests/test_sub.py:5" in attempts[0]["error"]

    # The retry's prompt lists the failed test (not the baseline problem, not the whole log).
    executor_prompts = [c["messages"][-1]["content"] for c in fake_ollama.chats()[1:]]
    assert "Open findings to fix" not in executor_prompts[0]
    second = executor_prompts[1]
    findings_part = second.split("# Open findings to fix (most severe first)")[1]
    assert "[major, new] test/pytest test-failure tests/test_sub.py:5:" in findings_part
    assert "imported but unused" not in findings_part

    [run_sarif] = [r for r in sarif["runs"] if r["tool"]["driver"]["name"] == "ruff"]
    [result] = run_sarif["results"]
    assert result["baselineState"] == "unchanged" and result["ruleId"] == "F401"
    assert not [r for r in sarif["runs"] if r["tool"]["driver"]["name"] == "pytest"]  # resolved
    assert "| Severity | build | test | lint | security | custom | Total |" in markdown
    assert "Baseline (already at the base commit, not counted against thresholds): 1" in markdown


async def _pending(engine: Engine, run_id: str) -> list:
    return await pending_asks(engine, run_id)


async def _next_ask(engine: Engine, run_id: str, *, after: str) -> list:
    """The run's pending asks once the first of them is no longer `after`."""
    items = await engine.interventions(run_id, pending_only=True)
    return items if items and items[0].id != after else []


async def test_criteria_commands_run_when_allowed_or_approved(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    criteria_phase = phase("phase-001")
    criteria_phase["verification_criteria"] = [
        "Run `test -f a.txt`",  # not in allowed_commands: asks
        "`sh check.sh` passes",  # not allowed either; rejected below
        "`python3 -m unittest --help` succeeds",  # matches "python3 -m unittest*": runs unasked
        "a.txt says hello",  # prose: nothing to run
    ]
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [criteria_phase],
        {("phase-001", 1): new_file("a.txt", "hello\n") + new_file("check.sh", "exit 1\n")},
    )
    async with await _engine(home) as engine:
        loaded = _loaded(
            home,
            repo,
            **{
                "llm.provider": "replay",
                "llm.replay": str(cassette),
                "verification.test": ["echo configured"],
            },
        )
        run = await engine.create_run("task", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        [first] = await _pending(engine, run.id)
        assert first.kind == "command" and "`test -f a.txt`" in first.reason
        await engine.resolve_intervention(first.id, approve=True)
        items = await eventually(
            lambda: _next_ask(engine, run.id, after=first.id),
            what="the second command to be asked about",
        )
        [second] = items
        assert second.kind == "command" and "`sh check.sh`" in second.reason
        await engine.resolve_intervention(second.id, approve=False)
        final = await driving
        logs = "\n".join(r.message for r in await engine.logs(run.id, limit=10_000))
    assert final.status is RunStatus.COMPLETED, final.error
    assert "$ test -f a.txt" in logs and "$ python3 -m unittest --help" in logs
    assert "$ sh check.sh" not in logs and "not running `sh check.sh`: rejected" in logs


async def test_yes_never_runs_model_written_commands(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    p = phase("phase-001")
    p["verification_criteria"] = ["run: touch pwned"]
    cassette = write_cassette(tmp_path / "c.jsonl", [p], {("phase-001", 1): new_file("a", "a")})
    async with await _engine(home) as engine:
        loaded = _loaded(home, repo, **{"llm.provider": "replay", "llm.replay": str(cassette)})
        run = await engine.start_run("task", repo, loaded, auto_approve=True)
    assert run.status is RunStatus.INTERRUPTED and "needs your input" in (run.error or "")
    assert not any(p.name == "pwned" for p in (home / "worktrees").rglob("pwned"))


async def test_per_category_limit_aborts_with_its_own_action(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": "X = 1\n"})
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001"), phase("phase-002", ["phase-001"])],
        {
            ("phase-001", 1): new_file(
                "shell.py",
                "import subprocess\n\n\ndef go(c):\n    return subprocess.call(c, shell=True)\n",
            ),
            ("phase-002", 1): new_file("b.txt", "b\n"),
        },
    )
    async with await _engine(home) as engine:
        loaded = _loaded(
            home,
            repo,
            **{
                "llm.provider": "replay",
                "llm.replay": str(cassette),
                "verification.security": [
                    {
                        "command": "bandit -q -f json -o {report} -r . --skip B404",
                        "parser": "bandit",
                    }
                ],
                "verification.level_severity": {"*:high": "medium"},  # so the attempt itself passes
                "thresholds.per_category": {"security": {"max": 0, "on_exceeded": "abort"}},
            },
        )
        run = await engine.start_run("task", repo, loaded, auto_approve=True)
        doc = await engine.run_document(run.id)
    assert run.status is RunStatus.FAILED
    assert "too many findings: category:security findings: 1 open, threshold 0" in (run.error or "")
    [finding] = doc["findings"]
    assert (finding["rule"], finding["path"], finding["line"], finding["status"]) == (
        "B602",
        "shell.py",
        5,
        "new",
    )
    assert [p["status"] for p in doc["phases"]] == ["completed", "pending"]


async def test_baseline_is_cached_by_commit_and_the_end_check_warns(
    home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"notes.txt": "todo: fix\n"})
    counter = tmp_path / "baseline-runs"
    # Fails at the base (notes.txt has a todo), and again for the phase's a.txt; counts its runs.
    check = f"echo run >> {counter}; ! grep -Hn todo notes.txt $(ls a.txt 2>/dev/null)"
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001")],
        {("phase-001", 1): new_file("a.txt", "a\ntodo: test\n")},
    )
    settings = {
        "llm.provider": "replay",
        "llm.replay": str(cassette),
        "verification.custom": [check],
        "thresholds.max_medium": 0,
        "thresholds.per_category": {"custom": {"max": 0, "on_exceeded": "warn"}},
    }
    async with await _engine(home) as engine:
        first = await engine.start_run("one", repo, _loaded(home, repo, **settings))
        second = await engine.start_run("two", repo, _loaded(home, repo, **settings))
        docs = [await engine.run_document(r.id) for r in (first, second)]
        logs = "\n".join(r.message for r in await engine.logs(second.id, limit=10_000))
    assert first.status is RunStatus.COMPLETED and second.status is RunStatus.COMPLETED
    # Baseline once for the commit (the second run took it from the cache) + one per attempt.
    assert counter.read_text().count("run") == 3
    assert "from the cache" in logs
    for doc in docs:
        old, new = doc["findings"]
        assert (old["status"], old["phase_id"], old["path"], old["line"]) == (
            "baseline",
            None,
            "notes.txt",
            1,
        )
        assert (new["status"], new["severity"], new["path"], new["line"]) == (
            "new",
            "medium",
            "a.txt",
            2,
        )
        assert doc["findings_summary"]["total_open"] == 1  # the baseline one is not counted
    # Checked after the phase and again at the end of the run; warn only logs.
    assert logs.count("warning: category:custom findings: 1 open, threshold 0") == 2


async def test_feedback_is_capped_and_most_severe_first(
    home: Path, tmp_path: Path, fake_ollama
) -> None:
    import sys

    repo = make_repo(tmp_path / "repo", {"calc.py": "def one() -> int:\n    return 1\n"})
    failing = "".join(f"\n\ndef test_{i}():\n    assert {i} == -1\n" for i in range(3))
    fake_ollama.models = {"qwen2.5-coder:7b": 32768}
    fake_ollama.chat_answers = [
        json.dumps({"phases": [phase("phase-001")]}),
        new_file("tests/test_many.py", "import os" + failing) + new_file("notes.txt", "x\n"),
        new_file("notes.txt", "fixed\n"),
    ]
    pytest_cmd = (
        f"{sys.executable} -m pytest -q -p no:cacheprovider -o junit_family=xunit1 "
        "--junitxml={report}"
    )
    loaded = load_config(
        Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)}),
        repo=repo,
        env={"OLLAMA_HOST": fake_ollama.url},
        cli={
            "execution.poll_seconds": 0.05,
            "execution.backoff_base_seconds": 0.01,
            "execution.max_attempts": 2,
            "execution.on_phase_failure": "continue",
            "verification.test": [pytest_cmd],
            "verification.lint": [
                {"command": "ruff check --no-cache --output-format=json .", "parser": "ruff"}
            ],
            "verification.feedback_max_findings": 2,
        },
    )
    async with await _engine(home) as engine:
        run = await engine.start_run("many", repo, loaded)
        doc = await engine.run_document(run.id)
    prompt = fake_ollama.chats()[2]["messages"][-1]["content"]
    listed = prompt.split("# Open findings to fix (most severe first)")[1].strip().splitlines()
    items = [line for line in listed if line.startswith("- ")]
    assert len(items) == 3, listed
    assert items[0].startswith("- [major, new] test/pytest test-failure tests/test_many.py:")
    assert items[1].startswith("- [major, new] test/pytest")
    first_attempt = [f for f in doc["findings"] if f["status"] != "baseline"]
    assert {f["rule"] for f in first_attempt} >= {"test-failure", "F401"}
    assert items[2] == f"- ... and {len(first_attempt) - 2} more finding(s) not listed here"
