"""Whole runs on the OpenAI-compatible and Anthropic fakes: the cost ledger, a budget that pauses
the run until it is raised, tokens reaching the store mid-stream, and record/replay."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.loader import LoadedConfig, load_config
from config.paths import Paths
from core.engine import Engine
from core.errors import InputError
from core.records import InterventionKind, RunStatus
from tests.cassette import new_file, phase
from tests.cassette import recorded as recorded_entries
from tests.clirun import cli
from tests.conftest import git, make_repo
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.waiting import eventually, pending_asks

OPENAI_KEY = "sk-openai-test-key-for-runs-0001"
ANTHROPIC_KEY = "sk-ant-test-key-for-runs-0002"

# The planner on "Anthropic", the executor on an "OpenAI-compatible" server, with prices that
# make every token count: $1000 / $2000 per million tokens is $0.001 / $0.002 a token.
MODELS_YAML = """
models:
  fake-claude:
    provider: anthropic
    model: claude-test
    max_tokens: 2000
    context_window: 100000
    prices: {input_per_mtok: 1000, output_per_mtok: 2000}
  fake-gpt:
    provider: openai
    model: gpt-test
    max_tokens: 2000
    context_window: 100000
    prices: {input_per_mtok: 1000, output_per_mtok: 2000, cached_input_per_mtok: 100}
roles:
  planner: fake-claude
  executor: fake-gpt
"""

PLAN = json.dumps({"phases": [phase("phase-001"), phase("phase-002", ["phase-001"])]})


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeOpenAI, FakeAnthropic]]:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    with (
        FakeOpenAI(["gpt-test"], api_key=OPENAI_KEY) as openai,
        FakeAnthropic(["claude-test"], api_key=ANTHROPIC_KEY) as anthropic,
    ):
        yield openai, anthropic


def configure(
    home: Path, repo: Path, servers: tuple[FakeOpenAI, FakeAnthropic], **cli: Any
) -> tuple[Paths, LoadedConfig]:
    openai, anthropic = servers
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.yaml").write_text(MODELS_YAML)
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    overrides = {
        "llm.openai.base_url": openai.base_url,
        "llm.anthropic.base_url": anthropic.base_url,
        "execution.poll_seconds": 0.05,
        "execution.backoff_base_seconds": 0.01,
        **cli,
    }
    return paths, load_config(paths, repo=repo, env={}, cli=overrides)


async def _status_is(engine: Engine, run_id: str, status: RunStatus) -> bool:
    return (await engine.get_run(run_id)).status is status


async def test_budget_reached_mid_run_pauses_until_raised(
    home: Path, tmp_path: Path, servers: tuple[FakeOpenAI, FakeAnthropic]
) -> None:
    openai, anthropic = servers
    anthropic.answers = [{"content": PLAN, "prompt_tokens": 100, "completion_tokens": 50}]
    openai.answers = [
        {"content": new_file("one.txt", "one\n"), "prompt_tokens": 200, "completion_tokens": 40},
        {
            "content": new_file("two.txt", "two\n"),
            "prompt_tokens": 200,
            "completion_tokens": 40,
            "cached_tokens": 100,
        },
    ]
    repo = make_repo(tmp_path / "repo")
    paths, loaded = configure(home, repo, servers, **{"execution.max_cost_usd": 0.25})
    async with await Engine.open(paths) as engine:
        run = await engine.create_run("two files", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        # The plan cost $0.2 (100 x $0.001 + 50 x $0.002); phase-001 brings it to $0.48,
        # past the $0.25 budget, so the run pauses before phase-002's model call.
        pending = await pending_asks(engine, run.id, driving)
        item = pending[0]
        assert item.kind is InterventionKind.BUDGET
        assert (
            "$0.4800 spent of $0.2500" in item.reason and "raise the budget or stop" in item.reason
        )
        # The intervention is stored a moment before the run's status says waiting.
        await eventually(
            lambda: _status_is(engine, run.id, RunStatus.WAITING),
            what=f"run {run.id} to be waiting",
        )
        assert len(openai.chats()) == 1, "no model call while the budget is reached"

        with pytest.raises(InputError, match="not above what was spent"):
            await engine.resolve_intervention(item.id, approve=True, budget_usd=0.3)
        with pytest.raises(InputError, match="--budget-usd"):
            await engine.resolve_intervention(item.id, approve=True)
        raised = await asyncio.to_thread(cli, home, "approve", item.id, "--budget-usd", "5")
        assert raised.returncode == 0, raised.stderr
        assert "budget raised to $5.0000" in raised.stdout
        final = await driving

        assert final.status is RunStatus.COMPLETED, final.error
        usage = await engine.usage(run.id)
        answered = (await engine.interventions(run.id))[0]
    assert answered.note == "budget raised to $5.0000"
    assert usage.planning.calls == 1 and usage.planning.cost_usd == pytest.approx(0.2)
    assert usage.phases["phase-001"].cost_usd == pytest.approx(0.28)
    # phase-002: 100 cached prompt tokens at $100/Mtok, 100 more at $1000/Mtok, 40 out at $2000/Mtok.
    assert usage.phases["phase-002"].cost_usd == pytest.approx(0.01 + 0.1 + 0.08)
    assert usage.phases["phase-002"].cached_tokens == 100
    assert usage.total.cost_usd == pytest.approx(0.2 + 0.28 + 0.19)
    assert usage.total.total_tokens == 150 + 240 + 240

    shown = cli(home, "show", run.id, check=True).stdout
    assert "phase-002" in shown and "$0.6700" in shown
    doc = json.loads(cli(home, "export", run.id, "--format", "json", check=True).stdout)
    assert doc["usage_totals"]["run"]["cost_usd"] == pytest.approx(0.67)
    assert doc["usage_totals"]["phases"]["phase-001"]["total_tokens"] == 240
    async with await Engine.open(paths) as engine:
        markdown = await engine.export(run.id, "markdown")
    assert "## Tokens and cost" in markdown and "| **run total** | 3 |" in markdown
    providers = {
        (r[0], r[1], r[2])
        for r in sqlite3.connect(paths.db).execute(
            "SELECT role, provider, attempt FROM llm_usage WHERE run_id = ?", (run.id,)
        )
    }
    assert providers == {("planner", "anthropic", None), ("executor", "openai", 1)}


async def test_rejecting_a_budget_stops_the_run(
    home: Path, tmp_path: Path, servers: tuple[FakeOpenAI, FakeAnthropic]
) -> None:
    openai, anthropic = servers
    anthropic.answers = [{"content": PLAN, "prompt_tokens": 100, "completion_tokens": 50}]
    repo = make_repo(tmp_path / "repo")
    paths, loaded = configure(home, repo, servers, **{"execution.max_tokens": 100})
    async with await Engine.open(paths) as engine:
        run = await engine.create_run("two files", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        pending = await pending_asks(engine, run.id, driving)
        assert "150 tokens spent of 100 tokens" in pending[0].reason
        await engine.resolve_intervention(pending[0].id, approve=False)
        final = await driving
    assert final.status is RunStatus.FAILED
    assert final.error is not None and "stopped at the run's budget" in final.error
    assert openai.chats() == []


@pytest.mark.parametrize("planner", ["test-model", "fake-gpt", "fake-claude"])
async def test_tokens_reach_the_store_while_the_answer_is_still_streaming(
    home: Path,
    tmp_path: Path,
    servers: tuple[FakeOpenAI, FakeAnthropic],
    fake_ollama: FakeOllama,
    planner: str,
) -> None:
    openai, anthropic = servers
    repo = make_repo(tmp_path / "repo")
    paths, loaded = configure(
        home, repo, servers, **{"models.planner": planner, "llm.host": fake_ollama.url}
    )
    plan = json.dumps({"phases": [phase("phase-001")]})

    def streamed_line_stored() -> bool:
        if not paths.db.exists():
            return False
        with sqlite3.connect(paths.db) as conn:
            return bool(conn.execute("SELECT 1 FROM events WHERE level = 'llm' LIMIT 1").fetchall())

    # The server sends all but the last piece, then waits for the first streamed log line.
    held = {"content": plan, "hold_last": streamed_line_stored}
    if planner == "test-model":  # a raw Ollama tag: NDJSON streaming
        fake_ollama.chat_answers = [held]
        openai.answers = [new_file("one.txt", "one\n")]
    elif planner == "fake-gpt":
        openai.answers = [held, new_file("one.txt", "one\n")]
    else:
        anthropic.answers = [held]
        openai.answers = [new_file("one.txt", "one\n")]
    async with await Engine.open(paths) as engine:
        run = await engine.start_run("one file", repo, loaded)
        lines = [r.message for r in await engine.logs(run.id, limit=10_000) if r.level == "llm"]
    assert run.status is RunStatus.COMPLETED, run.error
    assert len(lines) >= 2
    assert lines[0] != plan and plan.startswith(lines[0]), "the first line was a part of the answer"


def test_record_with_hosted_providers_then_replay_offline(
    tmp_path: Path, servers: tuple[FakeOpenAI, FakeAnthropic]
) -> None:
    openai, anthropic = servers
    anthropic.answers = [PLAN]
    openai.answers = [new_file("one.txt", "one\n"), new_file("two.txt", "two\n")]
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text(MODELS_YAML)
    cassette = tmp_path / "hosted.jsonl"
    first = make_repo(tmp_path / "first")
    env = {
        "ORCHESTRATOR__LLM__OPENAI__BASE_URL": openai.base_url,
        "ORCHESTRATOR__LLM__ANTHROPIC__BASE_URL": anthropic.base_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    }
    recorded = cli(
        home,
        "run",
        "two files",
        "--repo",
        str(first),
        "--headless",
        "--record",
        str(cassette),
        **env,
    )
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    entries = recorded_entries(cassette)
    assert [(e["role"], e["provider"]) for e in entries] == [
        ("planner", "anthropic"),
        ("executor", "openai"),
        ("executor", "openai"),
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
    runs = {r["repo"]: r for r in json.loads(cli(home, "runs", "--json", check=True).stdout)}
    trees = [
        git(repo, "rev-parse", f"{runs[str(repo)]['branch']}^{{tree}}") for repo in (first, second)
    ]
    assert trees[0] == trees[1]
    assert len(openai.chats()) == 2 and len(anthropic.messages()) == 1


async def test_exhausted_client_retries_fail_the_attempt_and_the_phase_retry_takes_over(
    home: Path, tmp_path: Path, servers: tuple[FakeOpenAI, FakeAnthropic]
) -> None:
    openai, anthropic = servers
    anthropic.answers = [json.dumps({"phases": [phase("phase-001")]})]
    storm = {"status": 500, "error": "upstream storm"}
    openai.answers = [storm, storm, new_file("one.txt", "one\n")]
    repo = make_repo(tmp_path / "repo")
    paths, loaded = configure(
        home,
        repo,
        servers,
        **{"llm.max_retries": 1, "llm.retry_backoff_seconds": 0.001, "execution.max_attempts": 2},
    )
    async with await Engine.open(paths) as engine:
        run = await engine.start_run("one file", repo, loaded)
        executions = (await engine.run_document(run.id))["executions"]
    assert run.status is RunStatus.COMPLETED, run.error
    assert [e["status"] for e in executions] == ["failed", "succeeded"]
    assert "HTTP 500" in executions[0]["error"] and "upstream storm" in executions[0]["error"]
    # Attempt 1: one try + one client retry; attempt 2: one try. Never more.
    assert len(openai.chats()) == 3


async def test_phase_budget_pauses_a_retry_and_is_raised_for_that_phase_only(
    home: Path, tmp_path: Path, servers: tuple[FakeOpenAI, FakeAnthropic]
) -> None:
    openai, anthropic = servers
    anthropic.answers = [json.dumps({"phases": [phase("phase-001")]})]
    openai.answers = [
        {"content": "no edit blocks here", "prompt_tokens": 100, "completion_tokens": 10},
        {"content": new_file("one.txt", "one\n"), "prompt_tokens": 100, "completion_tokens": 10},
    ]
    repo = make_repo(tmp_path / "repo")
    paths, loaded = configure(home, repo, servers, **{"execution.max_phase_tokens": 50})
    async with await Engine.open(paths) as engine:
        run = await engine.create_run("one file", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        pending = await pending_asks(engine, run.id, driving)
        item = pending[0]
        phases = {p.plan_id: p.id for p in await engine.phases(run.id)}
        assert item.kind is InterventionKind.BUDGET and item.phase_id == phases["phase-001"]
        assert "phase phase-001 reached its budget: 110 tokens spent of 50 tokens" in item.reason
        with pytest.raises(InputError, match="--budget-tokens"):
            await engine.resolve_intervention(item.id, approve=True, budget_usd=3.0)
        await engine.resolve_intervention(item.id, approve=True, budget_tokens=1000)
        final = await driving
        metadata = (await engine.get_run(run.id)).metadata
    assert final.status is RunStatus.COMPLETED, final.error
    assert metadata["budget"] == {"phase-001": {"tokens": 1000}}
    assert len(openai.chats()) == 2


def test_readme_command_for_a_local_openai_compatible_server(tmp_path: Path) -> None:
    """`--provider openai --base-url URL --model TAG`: no key, no models.yaml entry needed."""
    with FakeOpenAI(["local-coder"]) as server:
        server.answers = [
            json.dumps({"phases": [phase("phase-001")]}),
            new_file("one.txt", "one\n"),
        ]
        repo = make_repo(tmp_path / "repo")
        proc = cli(
            tmp_path / "home",
            "run",
            "one file",
            "--repo",
            str(repo),
            "--headless",
            "--provider",
            "openai",
            "--base-url",
            server.base_url,
            "--model",
            "local-coder",
            OPENAI_API_KEY="",
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [c["model"] for c in server.chats()] == ["local-coder", "local-coder"]
        assert server.chats()[0]["response_format"]["type"] == "json_schema"
        missing = cli(
            tmp_path / "home",
            "run",
            "x",
            "--repo",
            str(repo),
            "--headless",
            "--provider",
            "openai",
            "--base-url",
            server.base_url,
            "--model",
            "other-model",
        )
    assert missing.returncode == 2
    assert "'other-model' is not present on the openai server" in missing.stderr


def test_an_embedding_model_as_planner_is_refused_before_the_run(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    fake_ollama.models = {"nomic-embed-text": 2048}
    fake_ollama.capabilities = {"nomic-embed-text": ["embedding"]}
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
        "nomic-embed-text",
    )
    assert proc.returncode == 2
    assert "'nomic-embed-text' on Ollama cannot chat (its capabilities: embedding)" in proc.stderr
    assert fake_ollama.chats() == []


def test_headless_yes_stops_at_a_budget_and_resume_continues_after_approval(
    tmp_path: Path, servers: tuple[FakeOpenAI, FakeAnthropic]
) -> None:
    openai, anthropic = servers
    anthropic.answers = [{"content": PLAN, "prompt_tokens": 100, "completion_tokens": 50}]
    openai.answers = [
        {"content": new_file("one.txt", "one\n"), "prompt_tokens": 200, "completion_tokens": 40},
        {"content": new_file("two.txt", "two\n"), "prompt_tokens": 200, "completion_tokens": 40},
    ]
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text(MODELS_YAML)
    env = {
        "ORCHESTRATOR__LLM__OPENAI__BASE_URL": openai.base_url,
        "ORCHESTRATOR__LLM__ANTHROPIC__BASE_URL": anthropic.base_url,
        "ORCHESTRATOR__EXECUTION__MAX_COST_USD": "0.3",
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    }
    repo = make_repo(tmp_path / "repo")
    first = cli(home, "run", "two files", "--repo", str(repo), "--headless", "--yes", **env)
    assert first.returncode == 1
    assert "(budget) waiting" in first.stdout and "--budget-usd N" in first.stdout
    assert "needs your input" in first.stderr
    run_id = first.stdout.split()[1]  # "run <id>" comes first
    intervention = first.stdout.split("intervention ", 1)[1].split()[0]
    cli(home, "approve", intervention, "--budget-usd", "2", check=True)
    resumed = cli(home, "resume", run_id, "--headless", "--yes", **env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"run {run_id} completed" in resumed.stdout
    with sqlite3.connect(home / "orchestrator.db") as conn:
        cost = conn.execute("SELECT SUM(cost_usd) FROM llm_usage WHERE run_id = ?", (run_id,))
        assert cost.fetchone()[0] == pytest.approx(0.76)
    assert len(openai.chats()) == 2
