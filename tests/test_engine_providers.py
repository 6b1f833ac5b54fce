"""Runs through the real CLI against a fake Ollama server, cassette record/replay, external agents and
a merge conflict resolved by hand."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.records import RunStatus
from tests.cassette import new_file, phase, recorded, replace, write_cassette
from tests.clirun import cli, cli_json
from tests.conftest import git, make_repo
from tests.fakes.ollama_server import FakeOllama
from tests.waiting import pending_asks

PLAN = json.dumps({"phases": [phase("phase-001"), phase("phase-002", ["phase-001"])]})


def _script(fake: FakeOllama) -> None:
    fake.models = {"coder:raw": 4096}
    fake.chat_answers = [PLAN, new_file("one.txt", "one\n"), new_file("two.txt", "two\n")]


def test_record_with_ollama_then_replay_offline_gives_the_same_tree(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    _script(fake_ollama)
    home = tmp_path / "home"
    cassette = tmp_path / "recorded.jsonl"
    first = make_repo(tmp_path / "first")
    proc = cli(
        home,
        "run",
        "two files",
        "--repo",
        str(first),
        "--headless",
        "--host",
        fake_ollama.url,
        "--model",
        "coder:raw",
        "--record",
        str(cassette),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A raw tag gets its context length from /api/show, and num_ctx never exceeds it.
    assert any(
        r["path"] == "/api/show" and r["body"]["model"] == "coder:raw" for r in fake_ollama.requests
    )
    assert all(0 < c["options"]["num_ctx"] <= 4096 for c in fake_ollama.chats())
    entries = recorded(cassette)
    assert [(e["role"], e["phase"], e["attempt"]) for e in entries] == [
        ("planner", None, None),
        ("executor", "phase-001", 1),
        ("executor", "phase-002", 1),
    ]

    second = make_repo(tmp_path / "second")
    replayed = cli(
        home,
        "run",
        "two files",
        "--repo",
        str(second),
        "--headless",
        "--provider",
        "replay",
        "--replay",
        str(cassette),
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    runs = {r["repo"]: r for r in cli_json(home, "runs")}
    trees = [
        git(repo, "rev-parse", f"{runs[str(repo)]['branch']}^{{tree}}") for repo in (first, second)
    ]
    assert trees[0] == trees[1]
    assert len(fake_ollama.chats()) == 3, "the replayed run made no model call"


def test_a_missing_model_fails_with_the_pull_command(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    fake_ollama.models = {"other:1b": 2048}
    repo = make_repo(tmp_path / "repo")
    proc = cli(
        tmp_path / "home",
        "run",
        "x",
        "--repo",
        str(repo),
        "--headless",
        "--host",
        fake_ollama.url,
        "--model",
        "coder:missing",
    )
    assert proc.returncode == 2
    assert "ollama pull coder:missing" in proc.stderr
    assert fake_ollama.chats() == []
    assert cli_json(tmp_path / "home", "runs") == [], "no run is stored when the model is missing"


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    repo = make_repo(tmp_path / "repo")
    proc = cli(
        tmp_path / "home",
        "run",
        "x",
        "--repo",
        str(repo),
        "--headless",
        "--host",
        f"127.0.0.1:{port}",
        ORCHESTRATOR__LLM__MAX_RETRIES="0",
    )
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in proc.stderr


async def test_external_agent_executor_through_the_engine(home: Path, tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(
        "import pathlib, sys\n"
        "prompt = pathlib.Path(sys.argv[1]).read_text()\n"
        "name = 'second.txt' if 'phase-002' in prompt or 'Work phase-002' in prompt else 'first.txt'\n"
        "pathlib.Path(name).write_text('written by the agent\\n')\n"
        "print('agent wrote', name)\n"
    )
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001"), phase("phase-002", ["phase-001"])], {}
    )
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    loaded = load_config(
        paths,
        repo=repo,
        env={},
        cli={
            "llm.provider": "replay",
            "llm.replay": str(cassette),
            "execution.executor": "external",
            "execution.external.command": [sys.executable, str(agent), "{prompt_file}"],
            "execution.external.prompt_via": "file",
        },
    )
    async with await Engine.open(paths) as engine:
        run = await engine.start_run("let the agent work", repo, loaded)
        logs = [r.message for r in await engine.logs(run.id, limit=10_000)]
    assert run.status is RunStatus.COMPLETED, run.error
    assert sorted(git(repo, "ls-tree", "--name-only", run.branch or "").split()) == [
        "README.md",
        "first.txt",
        "second.txt",
    ]
    assert any("agent wrote" in line for line in logs)


async def test_merge_conflict_resolved_by_hand_then_approved(home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"shared.txt": "one\n"})
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [phase("phase-001"), phase("phase-002")],
        {
            ("phase-001", 1): replace("shared.txt", "one\n", "from phase one\n"),
            ("phase-002", 1): replace("shared.txt", "one\n", "from phase two\n"),
        },
    )
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    loaded = load_config(
        paths,
        repo=repo,
        env={},
        cli={"llm.provider": "replay", "llm.replay": str(cassette), "execution.poll_seconds": 0.05},
    )
    async with await Engine.open(paths) as engine:
        run = await engine.create_run("task", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        pending = await pending_asks(engine, run.id, driving)
        assert pending[0].kind == "merge_conflict"
        worktree = Path((await engine.get_run(run.id)).worktree or "")
        assert "<<<<<<<" in (worktree / "shared.txt").read_text()
        (worktree / "shared.txt").write_text("from both phases\n")
        git(worktree, "add", "shared.txt")
        await engine.resolve_intervention(pending[0].id, approve=True, note="merged by hand")
        final = await driving
    assert final.status is RunStatus.COMPLETED, final.error
    assert git(repo, "show", f"{final.branch}:shared.txt") == "from both phases"
    phase_commits = git(
        repo,
        "log",
        "--no-merges",
        "--format=%H",
        f"--grep=Orchestrator-Run: {run.id}",
        final.branch or "",
    ).split()
    assert len(phase_commits) == 2


async def test_rag_enabled_decides_whether_prompts_get_repository_context(
    home: Path, tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    for enabled in (True, False):
        _script(fake_ollama)
        fake_ollama.requests.clear()
        repo = make_repo(
            tmp_path / f"repo-{enabled}", {"notes/inventory_notes.md": "stock levels\n"}
        )
        loaded = load_config(
            paths,
            repo=repo,
            env={"OLLAMA_HOST": fake_ollama.url},
            cli={
                "models.planner": "coder:raw",
                "models.executor": "coder:raw",
                "rag.enabled": enabled,
            },
        )
        async with await Engine.open(paths) as engine:
            run = await engine.start_run("two files", repo, loaded)
        assert run.status is RunStatus.COMPLETED, run.error
        prompts = [
            m["content"] for c in fake_ollama.chats() for m in c["messages"] if m["role"] == "user"
        ]
        assert any("inventory_notes.md" in p for p in prompts) is enabled
