"""The engine end to end in-process: replay cassettes, real git repositories, real verification commands."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.errors import RepoError
from core.records import InterventionStatus, PhaseStatus, RunStatus
from tests.cassette import new_file, phase, replace, write_cassette
from tests.conftest import git, make_repo
from tests.waiting import eventually


async def _engine(home: Path) -> Engine:
    return await Engine.open(Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)}))


def _loaded(home: Path, repo: Path, cassette: Path, **extra: Any):
    cli = {
        "llm.provider": "replay",
        "llm.replay": str(cassette),
        "execution.backoff_base_seconds": 0.01,
        "execution.backoff_max_seconds": 0.02,
        "execution.poll_seconds": 0.05,
        "models.embedder": "hashing-256",  # runs index the repository; keep it instant here
    }
    cli.update(extra)
    return load_config(
        Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)}), repo=repo, env={}, cli=cli
    )


async def _wait_for_pending(engine: Engine, run_id: str) -> list:
    """Wait until the run has a pending intervention (the driver polls; so does this)."""
    return await eventually(
        lambda: engine.interventions(run_id, pending_only=True),
        what=f"a pending intervention in run {run_id}",
    )


async def _status_is(
    engine: Engine, run_id: str, status: RunStatus, driving: asyncio.Task[Any]
) -> bool:
    """The run has `status`; fails at once if the driving task ended first."""
    assert not driving.done(), f"the run ended while waiting for {status.value}"
    return (await engine.get_run(run_id)).status is status


def _trailer_commits(repo: Path, branch: str, run_id: str) -> list[str]:
    out = git(
        repo, "log", "--no-merges", "--format=%H", f"--grep=Orchestrator-Run: {run_id}", branch
    )
    return out.split()


async def test_run_with_parallel_phases_retry_and_auto_approval(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    phases = [
        phase("phase-001"),
        phase("phase-002", ["phase-001"]),
        phase("phase-003", ["phase-001"], risk="high"),
    ]
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        phases,
        {
            ("phase-001", 1): new_file("a.txt", "a\n"),
            ("phase-002", 1): new_file("b.txt", "wrong\n"),
            ("phase-002", 2): new_file("b.txt", "b\n"),
            ("phase-003", 1): new_file("c.txt", "c\n"),
        },
    )
    check = "! test -f b.txt || grep -q '^b$' b.txt"
    async with await _engine(home) as engine:
        loaded = _loaded(home, repo, cassette, **{"verification.test": [check]})
        run = await engine.start_run("Make three files", repo, loaded, auto_approve=True)
        assert run.status is RunStatus.COMPLETED, run.error
        doc = await engine.run_document(run.id)

    by_id = {p["plan_id"]: p for p in doc["phases"]}
    assert [by_id[k]["status"] for k in ("phase-001", "phase-002", "phase-003")] == [
        "completed"
    ] * 3
    assert by_id["phase-002"]["attempts"] == 2 and by_id["phase-001"]["attempts"] == 1
    assert all(len(p["commit"]) == 40 for p in doc["phases"])
    attempts = [
        e["attempt"] for e in doc["executions"] if e["phase_id"] == by_id["phase-002"]["id"]
    ]
    assert sorted(attempts) == [1, 2]
    # The failed first attempt left one finding, resolved by the retry.
    assert len(doc["findings"]) == 1
    assert doc["findings"][0]["category"] == "test" and doc["findings"][0]["severity"] == "major"
    assert doc["findings"][0]["status"] == "resolved"
    [risk] = doc["interventions"]
    assert (risk["kind"], risk["status"], risk["note"]) == ("risk", "approved", "auto-approved")
    # One trailer commit per phase on the run branch; the user's tree is untouched.
    assert len(_trailer_commits(repo, doc["branch"], run.id)) == 3
    assert git(repo, "status", "--porcelain") == ""
    assert sorted(p.name for p in repo.iterdir() if not p.name.startswith(".")) == ["README.md"]
    tree = git(repo, "ls-tree", "--name-only", doc["branch"]).split()
    assert sorted(tree) == ["README.md", "a.txt", "b.txt", "c.txt"]
    assert {a["type"] for a in doc["artifacts"]} >= {"summary", "diff", "report", "log"}
    assert doc["usage"]["planner"]["prompt_tokens"] == 100


async def test_rejecting_a_risky_phase_skips_it_and_its_dependants(
    home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    phases = [
        phase("phase-001", risk="critical"),
        phase("phase-002", ["phase-001"]),
        phase("phase-003"),
    ]
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        phases,
        {
            ("phase-001", 1): new_file("a.txt", "a\n"),
            ("phase-002", 1): new_file("b.txt", "b\n"),
            ("phase-003", 1): new_file("c.txt", "c\n"),
        },
    )
    async with await _engine(home) as engine:
        run = await engine.create_run("task", repo, _loaded(home, repo, cassette))
        driving = asyncio.create_task(engine.execute_run(run.id))
        [pending] = await _wait_for_pending(engine, run.id)
        assert pending.kind == "risk"
        await eventually(
            lambda: _status_is(engine, run.id, RunStatus.WAITING, driving),
            what="the run to wait for the risk decision",
        )
        await engine.resolve_intervention(pending.id, approve=False, note="too risky")
        final = await driving
        phases_now = {p.plan_id: p for p in await engine.phases(run.id)}
    assert final.status is RunStatus.COMPLETED
    assert phases_now["phase-001"].status is PhaseStatus.SKIPPED
    assert phases_now["phase-002"].status is PhaseStatus.SKIPPED
    assert phases_now["phase-003"].status is PhaseStatus.COMPLETED


async def test_phase_failure_asks_and_approval_grants_one_more_attempt(
    home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001")],
        {
            ("phase-001", 1): new_file("a.txt", "bad\n"),
            ("phase-001", 2): new_file("a.txt", "good\n"),
        },
    )
    async with await _engine(home) as engine:
        loaded = _loaded(
            home,
            repo,
            cassette,
            **{"execution.max_attempts": 1, "verification.test": ["grep -q good a.txt"]},
        )
        run = await engine.create_run("task", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        [pending] = await _wait_for_pending(engine, run.id)
        assert pending.kind == "phase_failed"
        await engine.resolve_intervention(pending.id, approve=True)
        final = await driving
        [p] = await engine.phases(run.id)
    assert final.status is RunStatus.COMPLETED
    assert p.attempts == 2 and p.status is PhaseStatus.COMPLETED


async def test_abort_policy_fails_the_run_and_yes_does_not_answer_phase_failures(
    home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001")], {("phase-001", 1): "no blocks here"}
    )
    async with await _engine(home) as engine:
        loaded = _loaded(
            home,
            repo,
            cassette,
            **{"execution.max_attempts": 2, "execution.on_phase_failure": "abort"},
        )
        run = await engine.start_run("task", repo, loaded, auto_approve=True)
        assert run.status is RunStatus.FAILED and "phase-001" in (run.error or "")
        loaded = _loaded(home, repo, cassette, **{"execution.max_attempts": 1})
        run2 = await engine.start_run("task", repo, loaded, auto_approve=True)
        assert run2.status is RunStatus.INTERRUPTED and "needs your input" in (run2.error or "")
        [pending] = await engine.interventions(run2.id, pending_only=True)
        assert pending.kind == "phase_failed"
        executions = (await engine.run_document(run.id))["executions"]
    assert [e["attempt"] for e in executions] == [1, 2]
    assert all("SEARCH/REPLACE" in (e["error"] or "") for e in executions)


async def test_threshold_ask_and_reject_aborts(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001"), phase("phase-002", ["phase-001"])],
        {
            ("phase-001", 1): new_file("a.txt", "a\n"),
            ("phase-002", 1): new_file("b.txt", "b\n"),
        },
    )
    async with await _engine(home) as engine:
        loaded = _loaded(
            home,
            repo,
            cassette,
            **{
                # Fails only once phase-001 made a.txt, so it is the run's finding, not baseline.
                "verification.lint": ["test ! -f a.txt || (echo 'style problem' && false)"],
                "thresholds.max_medium": 0,
                "thresholds.on_medium_exceeded": "ask",
                "verification.severity": {"lint": "medium"},
            },
        )
        run = await engine.create_run("task", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        [pending] = await _wait_for_pending(engine, run.id)
        assert pending.kind == "threshold"
        await engine.resolve_intervention(pending.id, approve=False)
        final = await driving
        phases_now = {p.plan_id: p for p in await engine.phases(run.id)}
    assert final.status is RunStatus.FAILED and "threshold" in (final.error or "")
    assert phases_now["phase-001"].status is PhaseStatus.COMPLETED
    assert phases_now["phase-002"].status is PhaseStatus.PENDING


async def test_merge_conflict_of_parallel_phases_becomes_an_intervention(
    home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"shared.txt": "one\n"})
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001"), phase("phase-002")],
        {
            ("phase-001", 1): replace("shared.txt", "one\n", "from phase one\n"),
            ("phase-002", 1): replace("shared.txt", "one\n", "from phase two\n"),
        },
    )
    async with await _engine(home) as engine:
        run = await engine.create_run("task", repo, _loaded(home, repo, cassette))
        driving = asyncio.create_task(engine.execute_run(run.id))
        [pending] = await _wait_for_pending(engine, run.id)
        assert pending.kind == "merge_conflict" and "shared.txt" in pending.reason
        await engine.resolve_intervention(pending.id, approve=False)
        final = await driving
        statuses = sorted(p.status for p in await engine.phases(run.id))
    assert final.status is RunStatus.FAILED
    assert statuses == [PhaseStatus.COMPLETED, PhaseStatus.FAILED]


async def test_dirty_and_non_git_repositories_are_refused(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "README.md").write_text("changed\n")
    cassette = write_cassette(tmp_path / "c.jsonl", [phase("phase-001")], {})
    async with await _engine(home) as engine:
        with pytest.raises(RepoError, match="--allow-dirty"):
            await engine.create_run("task", repo, _loaded(home, repo, cassette))
        run = await engine.create_run("task", repo, _loaded(home, repo, cassette), allow_dirty=True)
        assert run.status is RunStatus.PENDING
        plain = tmp_path / "plain"
        plain.mkdir()
        with pytest.raises(RepoError):
            await engine.create_run("task", plain, _loaded(home, plain, cassette))


async def test_cancel_from_another_caller_stops_a_waiting_run(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001", risk="high")],
        {("phase-001", 1): new_file("a", "a")},
    )
    async with await _engine(home) as engine:
        run = await engine.create_run("task", repo, _loaded(home, repo, cassette))
        driving = asyncio.create_task(engine.execute_run(run.id))
        await _wait_for_pending(engine, run.id)
        await engine.cancel_run(run.id)
        final = await driving
    assert final.status is RunStatus.CANCELLED


async def test_interrupted_run_resumes_and_answers_survive(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001"), phase("phase-002", ["phase-001"], risk="high")],
        {
            ("phase-001", 1): new_file("a.txt", "a\n"),
            ("phase-002", 1): new_file("b.txt", "b\n"),
        },
    )
    async with await _engine(home) as engine:
        run = await engine.create_run(
            "task", repo, _loaded(home, repo, cassette, **{"execution.max_parallel_phases": 1})
        )
        driving = asyncio.create_task(engine.execute_run(run.id))
        [pending] = await _wait_for_pending(engine, run.id)
        driving.cancel()
        interrupted = await driving
        assert interrupted.status is RunStatus.INTERRUPTED
        assert [r.run.id for r in await engine.list_runs(recoverable=True)] == [run.id]
        # Answered while nobody runs it: resume continues from the decision.
        await engine.resolve_intervention(pending.id, approve=True, note="ok")
        final = await engine.resume_run(run.id)
        doc = await engine.run_document(run.id)
    assert final.status is RunStatus.COMPLETED
    assert [p["attempts"] for p in doc["phases"]] == [1, 1]
    assert len(_trailer_commits(repo, doc["branch"], run.id)) == 2
    [item] = doc["interventions"]
    assert item["status"] == str(InterventionStatus.APPROVED) and item["note"] == "ok"


async def test_ollama_provider_end_to_end(home: Path, tmp_path: Path, fake_ollama) -> None:
    repo = make_repo(tmp_path / "repo")
    import json

    fake_ollama.models = {"qwen2.5-coder:7b": 32768}
    fake_ollama.chat_answers = [
        json.dumps({"phases": [phase("phase-001")]}),
        new_file("hello.txt", "hi\n"),
    ]
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    loaded = load_config(
        paths, repo=repo, env={"OLLAMA_HOST": fake_ollama.url}, cli={"execution.poll_seconds": 0.05}
    )
    async with await _engine(home) as engine:
        run = await engine.start_run("say hi", repo, loaded)
        doc = await engine.run_document(run.id)
    assert run.status is RunStatus.COMPLETED, run.error
    chats = [r for r in fake_ollama.requests if r["path"] == "/api/chat"]
    assert "format" in chats[0]["body"] and chats[0]["body"]["format"]["type"] == "object"
    assert "num_ctx" in chats[1]["body"]["options"]
    assert doc["usage"]["executor"]["calls"] == 1
    assert git(repo, "show", f"{doc['branch']}:hello.txt") == "hi"
    assert os.environ.get("OLLAMA_HOST") is None


async def test_reports_and_diffs_are_listed_even_when_a_commit_is_refused(
    home: Path, tmp_path: Path
) -> None:
    """An attempt's report and a phase's diff are written while git works and stored with the
    attempt's and the phase's end; a commit a hook refuses still leaves its attempt's report."""
    repo = make_repo(tmp_path / "repo", {"README.md": "demo\n"})
    hook = repo / ".git" / "hooks" / "pre-commit"  # worktrees share the repository's hooks
    hook.write_text("#!/bin/sh\ngit diff --cached --name-only | grep -qx b.txt && exit 1\nexit 0\n")
    hook.chmod(0o755)
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001"), phase("phase-002", deps=["phase-001"])],
        {
            ("phase-001", 1): new_file("a.txt", "a\n"),
            ("phase-002", 1): new_file("b.txt", "b\n"),
        },
    )
    async with await _engine(home) as engine:
        loaded = _loaded(home, repo, cassette, **{"verification.test": ["true"]})
        run = await engine.start_run("Make two files", repo, loaded)
        doc = await engine.run_document(run.id)

    assert run.status is RunStatus.FAILED and "git commit" in (run.error or ""), run.error
    listed = {
        Path(a["path"]).relative_to(home).as_posix().replace(run.id, "RUN"): Path(a["path"])
        for a in doc["artifacts"]
        if a["type"] in ("report", "diff")
    }
    assert sorted(listed) == [
        "artifacts/RUN/phase-001.diff",
        "reports/RUN/phase-001-attempt-1.txt",
        "reports/RUN/phase-002-attempt-1.txt",  # its commit was refused after the checks ran
    ]
    assert "+a" in listed["artifacts/RUN/phase-001.diff"].read_text()
    assert all(
        listed[f"reports/RUN/{p}-attempt-1.txt"].read_text().startswith("$ true\nexit: 0")
        for p in ("phase-001", "phase-002")
    )
