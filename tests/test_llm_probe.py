"""What a probe against a real model server (llama.cpp with a small base model) found, each on the
fake servers: cassettes of failed calls, token-limit cut-offs, a host that is not the provider it
was told, the server's context length, copied example plans, a broken chat template, and the
tokens of a stream that broke off."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from config.catalog import ModelDef
from core.errors import (
    LLMError,
    LLMRetriableError,
    ModelNotFoundError,
    PlanError,
    PlanValidationError,
    PromptTooLargeError,
    ProviderMismatchError,
)
from core.llm.anthropic import AnthropicProvider
from core.llm.base import ChatRequest, ChatResponse, LLMProvider
from core.llm.client import LLMClient
from core.llm.ollama import OllamaProvider
from core.llm.openai_compat import OpenAICompatProvider
from core.llm.replay import CassetteRecorder, ReplayProvider
from core.planner import _EXAMPLE, check_not_example, checked_plan, make_plan
from core.setup import checked_model
from tests.cassette import new_file, phase, recorded
from tests.clirun import cli
from tests.conftest import make_repo
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI

MODEL = "test-model"
GOOD_PLAN = json.dumps({"phases": [phase("phase-001")]})


def openai(server: FakeOpenAI) -> OpenAICompatProvider:
    return OpenAICompatProvider(server.base_url, None, timeout_seconds=5, connect_timeout_seconds=1)


async def plan_with(provider: LLMProvider, *, max_tokens: int = 500, retries: int = 0) -> Any:
    client = LLMClient(provider, max_retries=retries, backoff_seconds=0)
    try:
        return await make_plan(
            client,
            task="Add a subtract function",
            model=MODEL,
            context="calc.py",
            run_id="r1",
            temperature=None,
            max_tokens=max_tokens,
            context_window=None,
        )
    finally:
        await client.aclose()


def lines(path: Path) -> list[dict[str, Any]]:
    return recorded(path)


# ---- 1. a failed planning leaves a cassette that replays strictly ------------------------------


async def test_a_failed_planning_is_recorded_round_by_round_and_replays_strictly(
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "failed.jsonl"
    with FakeOpenAI([MODEL]) as server:
        server.answers = ["this is not json", "still not json {"]
        with pytest.raises(LLMError) as recorded:
            await plan_with(CassetteRecorder(cassette, openai(server)))
    entries = lines(cassette)
    # Both answers as they arrived (the provider's repair round included), then the failure.
    assert [e.get("round", False) for e in entries] == [True, True, False]
    assert [e["response"]["content"] for e in entries[:2]] == [
        "this is not json",
        "still not json {",
    ]
    assert "not valid JSON" in entries[0]["problem"]
    assert entries[1]["request"]["messages"][-2]["content"] == "this is not json"
    assert entries[2]["error"]["type"] == "LLMError"
    assert entries[2]["error"]["message"] == str(recorded.value)

    with pytest.raises(LLMError) as replayed:
        await plan_with(ReplayProvider(cassette, strict=True))
    assert str(replayed.value) == str(recorded.value)


async def test_a_retried_failure_replays_in_order(tmp_path: Path) -> None:
    cassette = tmp_path / "retried.jsonl"
    with FakeOpenAI([MODEL]) as server:
        server.answers = [{"status": 500, "error": "boom"}, GOOD_PLAN]
        plan, _ = await plan_with(CassetteRecorder(cassette, openai(server)), retries=1)
    assert [e.get("error", {}).get("type") for e in lines(cassette)] == ["LLMRetriableError", None]
    replayed, _ = await plan_with(ReplayProvider(cassette, strict=True), retries=1)
    assert replayed == plan


# ---- 2. an answer cut off by max_tokens --------------------------------------------------------

CUT = '{"phases": [{"id": "phase-001", "name": "Add subtract", "description": "Add'


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
async def test_an_answer_cut_off_by_max_tokens_names_the_limit_and_the_key(kind: str) -> None:
    answer = {"content": CUT, "finish_reason": "length"}
    server: Any
    if kind == "ollama":
        server = FakeOllama({MODEL: 8192})
        server.chat_answers = [answer]
        build: Any = lambda: OllamaProvider(server.url, 5, 1)
        expected: type[Exception] = PlanError  # Ollama enforces the schema; the planner checks
    elif kind == "openai":
        server = FakeOpenAI([MODEL])
        server.answers = [answer]
        build = lambda: openai(server)
        expected = LLMError
    else:
        server = FakeAnthropic([MODEL], api_key="k")
        server.answers = [answer]
        build = lambda: AnthropicProvider(
            server.base_url, "k", timeout_seconds=5, connect_timeout_seconds=1
        )
        expected = LLMError
    with server, pytest.raises(expected) as caught:
        await plan_with(build(), max_tokens=40)
    text = str(caught.value)
    assert "hit its token limit (40)" in text
    assert f"raise models.{MODEL}.max_tokens in models.yaml" in text
    chats = server.chats() if kind != "anthropic" else server.messages()
    assert len(chats) == 1  # no repair round: it would be cut off at the same limit


# ---- 3. a server that is not the provider it was told -----------------------------------------


@pytest.mark.parametrize("call", ["chat", "list", "info"])
async def test_ollama_pointed_at_an_openai_compatible_server_says_what_answered(
    call: str,
) -> None:
    with FakeOpenAI(["served-model"]) as server:
        host = f"http://127.0.0.1:{server.port}"
        provider = OllamaProvider(host, 5, 1)
        try:
            with pytest.raises(ProviderMismatchError) as caught:
                if call == "chat":
                    await provider.chat(ChatRequest(role="planner", model=MODEL, messages=[]), None)
                elif call == "list":
                    await provider.list_models()
                else:
                    await provider.model_info(MODEL)
        finally:
            await provider.aclose()
    text = str(caught.value)
    assert f"{host} is not an Ollama server" in text
    assert "OpenAI-compatible server" in text and "served-model" in text
    assert f"--provider openai --base-url {host}/v1" in text
    assert "Model ''" not in text and "ollama pull" not in text


# ---- 4. the server's context length and a prompt that does not fit ----------------------------


async def test_context_length_is_read_from_llama_cpp_models_meta() -> None:
    with FakeOpenAI([MODEL, "other"]) as server:
        server.contexts = {MODEL: 8192}
        provider = openai(server)
        try:
            info = await provider.model_info(MODEL)
            other = await provider.model_info("other")
        finally:
            await provider.aclose()
    assert (info.present, info.context_length) == (True, 8192)
    assert (other.present, other.context_length) == (True, None)


async def test_a_prompt_past_the_servers_context_is_reported_once_without_retrying() -> None:
    with FakeOpenAI([MODEL]) as server:
        server.answers = [
            {
                "status": 400,
                "error": "the request exceeds the available context size, try increasing it",
                "error_type": "exceed_context_size_error",
                "error_extra": {"n_prompt_tokens": 9100, "n_ctx": 8192},
            }
        ]
        client = LLMClient(openai(server), max_retries=3, backoff_seconds=0)
        request = ChatRequest(
            role="executor", model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
        try:
            with pytest.raises(PromptTooLargeError) as caught:
                await client.chat(request)
        finally:
            await client.aclose()
        assert len(server.chats()) == 1
    assert "the prompt (9100 tokens) does not fit the server's context (8192)" in str(caught.value)


async def test_a_prompt_past_the_known_context_is_refused_before_sending() -> None:
    with FakeOpenAI([MODEL]) as server:
        provider = openai(server)
        request = ChatRequest(
            role="executor",
            model=MODEL,
            messages=[{"role": "user", "content": "word " * 4000}],
            context_window=1024,
        )
        try:
            with pytest.raises(PromptTooLargeError, match=r"does not fit the server's context"):
                await provider.chat(request)
        finally:
            await provider.aclose()
        assert server.chats() == []


# ---- 5. a plan that copies the prompt's example or holds placeholders -------------------------


async def test_the_prompts_example_plan_is_sent_back() -> None:
    with FakeOpenAI([MODEL]) as server:
        server.answers = [json.dumps(_EXAMPLE), GOOD_PLAN]
        plan, _ = await plan_with(openai(server))
        repair = server.chats()[1]["messages"][-1]["content"]
    assert [p.id for p in plan.phases] == ["phase-001"]
    assert "copied from the example in the instructions ('Add the parser')" in repair


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("description", "...", "placeholder description"),
        ("verification_criteria", ["..."], "placeholder verification criterion"),
        ("verification_criteria", ["pytest passes", "TODO"], "placeholder verification"),
    ],
)
def test_placeholder_text_is_refused(field: str, value: Any, said: str) -> None:
    answer = json.dumps({"phases": [{**phase("phase-001"), field: value}]})
    with pytest.raises(PlanValidationError, match=said):
        checked_plan(answer)


def test_shipped_and_test_plans_still_pass() -> None:
    """The demo cassette's plans, bench/engine.py's plan shape and the tests' plans."""
    root = Path(__file__).resolve().parent.parent
    demo = [json.loads(x) for x in (root / "core/demo/cassette.jsonl").read_text().splitlines()]
    plans = [e["response"]["content"] for e in demo if e["role"] == "planner"]
    assert plans
    for answer in plans:
        checked_plan(answer)
    bench_phase = {**phase("p001"), "name": "phase 1", "description": "write one file"}
    test_phases = [phase("phase-001"), {**phase("p1"), "name": "n", "description": "d"}]
    for item in [bench_phase, *test_phases]:
        check_not_example(checked_plan(json.dumps({"phases": [{**item, "dependencies": []}]})))


# ---- 7. tokens streamed before a connection broke are counted ---------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
async def test_tokens_streamed_before_the_connection_broke_are_counted(kind: str) -> None:
    text = "".join(f"word{i} " for i in range(200))
    answer = {"content": text, "drop": True}
    server: Any
    provider: LLMProvider
    if kind == "ollama":
        server = FakeOllama({MODEL: 8192})
        server.chat_answers = [answer]
    else:
        server = FakeOpenAI([MODEL]) if kind == "openai" else FakeAnthropic([MODEL], api_key="k")
        server.answers = [answer]
    counted: list[ChatResponse] = []

    async def on_usage(_request: ChatRequest, response: ChatResponse) -> None:
        counted.append(response)

    with server:
        if kind == "ollama":
            provider = OllamaProvider(server.url, 5, 1)
        elif kind == "openai":
            provider = openai(server)
        else:
            provider = AnthropicProvider(
                server.base_url, "k", timeout_seconds=5, connect_timeout_seconds=1
            )
        client = LLMClient(provider, max_retries=0, on_usage=on_usage)
        request = ChatRequest(
            role="executor", model=MODEL, messages=[{"role": "user", "content": "go"}]
        )
        streamed: list[str] = []
        try:
            with pytest.raises(LLMRetriableError, match="broke"):
                await client.chat(request, on_text=streamed.append)
        finally:
            await client.aclose()
    assert "".join(streamed) == text  # the live view saw it all
    assert len(counted) == 1
    assert counted[0].raw.get("partial") is True
    assert counted[0].completion_tokens >= len(text) // 4
    assert counted[0].prompt_tokens > 0


# ---- 3. `orchestrator models` routes as a run does ---------------------------------------------


def test_models_against_a_server_that_is_not_ollama_names_it(tmp_path: Path) -> None:
    with FakeOpenAI(["served-model"]) as server:
        host = f"http://127.0.0.1:{server.port}"
        proc = cli(tmp_path / "home", "models", "--provider", "ollama", "--base-url", host)
    assert proc.returncode == 0, proc.stderr
    assert "Model ''" not in proc.stdout
    assert "ollama pull \n" not in proc.stdout and "ollama pull" not in proc.stdout
    assert f"{host} is not an Ollama server" in proc.stdout
    assert "served-model" in proc.stdout


@pytest.mark.parametrize("how", ["flags", "config"])
def test_models_routes_chat_models_to_the_runs_provider(tmp_path: Path, how: str) -> None:
    with FakeOpenAI(["qwen2.5-coder:7b"]) as server:
        server.contexts = {"qwen2.5-coder:7b": 8192}
        if how == "flags":
            args = ["--provider", "openai", "--base-url", server.base_url]
            env = {}
        else:  # llm.provider and the URL from the configuration, as a run reads them
            args = []
            env = {
                "ORCHESTRATOR__LLM__PROVIDER": "openai",
                "ORCHESTRATOR__LLM__OPENAI__BASE_URL": server.base_url,
            }
        proc = cli(tmp_path / "home", "models", "--json", *args, OPENAI_API_KEY="", **env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    coder = rows["qwen2.5-coder:7b"]
    assert (coder["provider"], coder["reachable"], coder["present"]) == ("openai", True, True)
    assert coder["context_length"] == 8192  # the server's n_ctx wins over models.yaml's 32768
    assert rows["llama3.1:8b"]["provider"] == "openai"
    assert rows["llama3.1:8b"]["present"] is False
    assert rows["all-minilm-l6-v2-int8"]["provider"] == "onnx"  # embedders keep their own


# ---- 6. a prompt size far below the estimate warns (a broken chat template) -------------------


def test_a_run_warns_once_when_the_server_counts_far_fewer_prompt_tokens(tmp_path: Path) -> None:
    with FakeOpenAI(["local-coder"]) as server:
        server.answers = [
            {"content": GOOD_PLAN, "prompt_tokens": 3},
            {
                "content": new_file("one.txt", "one\n"),
                "prompt_tokens": 3,
                "finish_reason": "length",
            },
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
    with sqlite3.connect(tmp_path / "home" / "orchestrator.db") as conn:
        warnings = [
            row[0] for row in conn.execute("SELECT message FROM events WHERE level = 'warning'")
        ]
    shortfall = [w for w in warnings if "the server counted 3 prompt tokens" in w]
    assert len(shortfall) == 1, warnings  # once per model and run, not once per call
    assert "chat template" in shortfall[0]
    limit = [w for w in warnings if "hit its token limit (" in w]
    assert len(limit) == 1 and "models.local-coder.max_tokens" in limit[0]


async def test_a_run_takes_the_servers_context_over_models_yaml() -> None:
    with FakeOpenAI([MODEL]) as server:
        server.contexts = {MODEL: 8192}
        provider = openai(server)
        try:
            unknown = await checked_model(provider, ModelDef(name=MODEL, context_window=None))
            larger = await checked_model(provider, ModelDef(name=MODEL, context_window=32768))
        finally:
            await provider.aclose()
    assert unknown.context_window == 8192 and larger.context_window == 8192


async def test_a_model_missing_on_ollama_names_the_host_and_the_pull_line(
    fake_ollama: FakeOllama,
) -> None:
    provider = OllamaProvider(fake_ollama.url, 5, 1)
    try:
        with pytest.raises(ModelNotFoundError) as caught:
            await checked_model(provider, ModelDef(name="nope:7b"))
    finally:
        await provider.aclose()
    assert f"on the ollama server at {fake_ollama.url}; run: ollama pull nope:7b" in str(
        caught.value
    )
