"""Every provider (Ollama, OpenAI-compatible, Anthropic) against a real HTTP server on 127.0.0.1
that speaks its wire protocol: streams, structured output, retries, and each kind of failure."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.errors import LLMAuthError, LLMError, LLMRetriableError, ModelNotFoundError
from core.llm.anthropic import AnthropicProvider
from core.llm.base import ChatRequest, LLMProvider
from core.llm.client import LLMClient
from core.llm.ollama import OllamaProvider
from core.llm.openai_compat import OpenAICompatProvider
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI

MODEL = "test-model"
KEY = "sk-test-provider-key-0123456789"
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["answer", "count"],
}


@dataclass
class Target:
    """One provider and its fake server, scripted the same way for every provider."""

    name: str
    server: Any
    build: Callable[..., LLMProvider]

    def script(self, *answers: Any) -> None:
        if isinstance(self.server, FakeOllama):
            self.server.chat_answers = list(answers)
        else:
            self.server.answers = list(answers)

    def chats(self) -> list[dict[str, Any]]:
        if isinstance(self.server, FakeOllama):
            return self.server.chats()
        if isinstance(self.server, FakeOpenAI):
            return self.server.chats()
        return self.server.messages()


def _target(name: str) -> tuple[Any, Callable[..., LLMProvider]]:
    if name == "ollama":
        ollama_server = FakeOllama({MODEL: 8192})

        def ollama(timeout: float = 5, url: str | None = None) -> LLMProvider:
            return OllamaProvider(url or ollama_server.url, timeout, 1)

        return ollama_server, ollama
    if name == "openai":
        openai_server = FakeOpenAI([MODEL], api_key=KEY)

        def openai(timeout: float = 5, url: str | None = None) -> LLMProvider:
            return OpenAICompatProvider(
                url or openai_server.base_url,
                KEY,
                timeout_seconds=timeout,
                connect_timeout_seconds=1,
            )

        return openai_server, openai
    anthropic_server = FakeAnthropic([MODEL], api_key=KEY)

    def anthropic(timeout: float = 5, url: str | None = None) -> LLMProvider:
        return AnthropicProvider(
            url or anthropic_server.base_url,
            KEY,
            timeout_seconds=timeout,
            connect_timeout_seconds=1,
        )

    return anthropic_server, anthropic


@pytest.fixture(params=["ollama", "openai", "anthropic"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    server, build = _target(request.param)
    with server:
        yield Target(request.param, server, build)


@pytest.fixture
async def provider(target: Target) -> AsyncIterator[LLMProvider]:
    prov = target.build()
    yield prov
    await prov.aclose()


def req(content: str = "hello", **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        role="executor",
        model=kwargs.pop("model", MODEL),
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": content},
        ],
        **kwargs,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_streamed_answer_arrives_in_batches(target: Target, provider: LLMProvider) -> None:
    content = "".join(f"token{i:03d} " for i in range(120))
    target.server.stream_pieces = 60
    target.script(content)
    batches: list[str] = []
    response = await provider.chat(req(max_tokens=500), on_text=batches.append)
    assert response.content == content and "".join(batches) == content
    assert 1 <= len(batches) < 60, "text is batched, never one event per token"
    assert response.provider == target.name
    assert response.prompt_tokens > 0 and response.completion_tokens > 0
    assert target.chats()[0]["stream"] is True


async def test_unstreamed_answer_and_the_system_prompt(
    target: Target, provider: LLMProvider
) -> None:
    target.script("plain answer")
    response = await provider.chat(req(max_tokens=300))
    assert response.content == "plain answer"
    body = target.chats()[0]
    assert not body.get("stream")
    if target.name == "anthropic":
        assert body["system"] == "You are terse."  # system text goes to its own parameter
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body["max_tokens"] == 300
    else:
        assert body["messages"][0] == {"role": "system", "content": "You are terse."}


async def test_structured_output_sends_the_schema(target: Target, provider: LLMProvider) -> None:
    target.script(json.dumps({"answer": "yes", "count": 2}))
    response = await provider.chat(req(json_schema=SCHEMA))
    assert json.loads(response.content) == {"answer": "yes", "count": 2}
    body = target.chats()[0]
    if target.name == "ollama":
        assert body["format"] == SCHEMA
    elif target.name == "openai":
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    else:
        assert body["output_config"]["format"] == {"type": "json_schema", "schema": SCHEMA}


@pytest.mark.parametrize("name", ["openai", "anthropic"])
async def test_invalid_json_gets_one_repair_round(name: str) -> None:
    server, build = _target(name)
    with server:
        server.answers = [
            {"content": '```json\n{"answer": "yes"}\n```', "prompt_tokens": 10},
            {"content": '{"answer": "yes", "count": 3}', "prompt_tokens": 20},
            '{"answer": 1}',
            "still not json",
        ]
        provider = build()
        try:
            response = await provider.chat(req(json_schema=SCHEMA))
            assert json.loads(response.content) == {"answer": "yes", "count": 3}
            assert response.prompt_tokens == 30, "both rounds are counted in the ledger"
            repair = server.calls("/messages" if name == "anthropic" else "/chat/completions")[1]
            assert "count" in repair["messages"][-1]["content"]  # the error is sent back
            spent: list[int] = []

            async def on_usage(_request: ChatRequest, response: Any) -> None:
                spent.append(response.prompt_tokens + response.completion_tokens)

            client = LLMClient(provider, max_retries=2, on_usage=on_usage)
            with pytest.raises(LLMError, match="after one repair round") as caught:
                await client.chat(req(json_schema=SCHEMA))
            assert not isinstance(caught.value, LLMRetriableError)
            assert len(spent) == 1 and spent[0] > 0, "the failed rounds are still in the ledger"
            assert len(server.calls("/messages" if name == "anthropic" else "/completions")) == 4
        finally:
            await provider.aclose()


async def test_openai_server_without_json_schema_falls_back_to_validated_json() -> None:
    with FakeOpenAI([MODEL]) as server:
        server.supports_json_schema = False
        server.answers = ["not json at all", json.dumps({"answer": "ok", "count": 1})]
        provider = OpenAICompatProvider(
            server.base_url, None, timeout_seconds=5, connect_timeout_seconds=1
        )
        try:
            response = await provider.chat(req(json_schema=SCHEMA))
        finally:
            await provider.aclose()
    assert json.loads(response.content) == {"answer": "ok", "count": 1}
    formats = [(c.get("response_format") or {}).get("type") for c in server.chats()]
    assert formats == ["json_schema", "json_object", "json_object"]
    # The schema travels in the prompt once the server cannot enforce it.
    assert '"count"' in server.chats()[1]["messages"][0]["content"]
    # A local server needs no key: a placeholder is sent, never a real one.
    assert server.requests[0]["headers"]["authorization"] == "Bearer no-key-needed"


async def test_429_then_success_waits_as_retry_after_asks(
    target: Target, provider: LLMProvider, caplog: pytest.LogCaptureFixture
) -> None:
    target.script(
        {"status": 429, "error": "slow down", "headers": {"Retry-After": "0.3"}}, "second try"
    )
    client = LLMClient(provider, max_retries=3, backoff_seconds=0.001, max_backoff_seconds=5)
    with caplog.at_level(logging.WARNING, logger="core.llm.client"):
        response = await client.chat(req())
    assert response.content == "second try"
    assert len(target.chats()) == 2
    waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(waits) == 1
    if target.name != "ollama":  # the Ollama client does not expose response headers
        assert "retrying in 0.30s" in waits[0] and "asked to wait 0.3s" in waits[0]


async def test_500_storm_exhausts_the_retries(target: Target, provider: LLMProvider) -> None:
    target.script(*[{"status": 500, "error": "storm"}] * 6)
    client = LLMClient(provider, max_retries=2, backoff_seconds=0.001)
    with pytest.raises(LLMRetriableError, match="HTTP 500"):
        await client.chat(req())
    assert len(target.chats()) == 3, "one try plus max_retries, never more"


async def test_overloaded_is_retriable(target: Target, provider: LLMProvider) -> None:
    status = 529 if target.name == "anthropic" else 503
    target.script({"status": status, "error": "Overloaded"}, "ok")
    client = LLMClient(provider, max_retries=1, backoff_seconds=0.001)
    assert (await client.chat(req())).content == "ok"


async def test_error_inside_a_stream_is_retriable(target: Target, provider: LLMProvider) -> None:
    target.script({"content": "partial answer", "stream_error": "overloaded mid-answer"})
    with pytest.raises(LLMRetriableError, match="overloaded mid-answer"):
        await provider.chat(req(), on_text=lambda _t: None)


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_model_fails_at_once(
    target: Target, provider: LLMProvider, stream: bool
) -> None:
    client = LLMClient(provider, max_retries=3, backoff_seconds=0.001)
    with pytest.raises(ModelNotFoundError, match="nope-model"):
        await client.chat(req(model="nope-model"), on_text=(lambda _t: None) if stream else None)
    assert (await provider.model_info("nope-model")).present is False
    assert (await provider.model_info(MODEL)).present is True


@pytest.mark.parametrize("stream", [False, True])
async def test_stall_past_the_timeout_is_retriable(target: Target, stream: bool) -> None:
    target.script({"stall": 30, "content": "too late"})
    provider = target.build(timeout=0.3)
    try:
        with pytest.raises(LLMRetriableError, match="did not answer within the timeout"):
            await provider.chat(req(), on_text=(lambda _t: None) if stream else None)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_names_the_server(target: Target, stream: bool) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}" + ("/v1" if target.name == "openai" else "")
    provider = target.build(url=url)
    try:
        with pytest.raises(LLMRetriableError, match="Cannot reach") as caught:
            await provider.chat(req(), on_text=(lambda _t: None) if stream else None)
    finally:
        await provider.aclose()
    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_refused_key_fails_at_once_and_is_never_echoed(
    target: Target, provider: LLMProvider
) -> None:
    target.script({"status": 401, "error": "invalid key", "echo_key": True}, "unused")
    client = LLMClient(provider, max_retries=3, backoff_seconds=0.001)
    with pytest.raises(LLMError) as caught:
        await client.chat(req())
    if target.name != "ollama":
        assert isinstance(caught.value, LLMAuthError)
        assert ("OPENAI_API_KEY" if target.name == "openai" else "ANTHROPIC_API_KEY") in str(
            caught.value
        )
    assert not isinstance(caught.value, LLMRetriableError)
    assert len(target.chats()) == 1
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("name", ["openai", "anthropic"])
async def test_missing_key_for_the_hosted_api_says_which_variable(name: str) -> None:
    if name == "openai":
        provider: LLMProvider = OpenAICompatProvider(
            "https://api.openai.com/v1", None, timeout_seconds=1, connect_timeout_seconds=1
        )
    else:
        provider = AnthropicProvider(
            "https://api.anthropic.com", None, timeout_seconds=1, connect_timeout_seconds=1
        )
    try:
        with pytest.raises(LLMAuthError, match="OPENAI_API_KEY|ANTHROPIC_API_KEY"):
            await provider.chat(req())
    finally:
        await provider.aclose()


async def test_concurrency_limit_is_per_provider_and_process_wide(target: Target) -> None:
    target.server.default_answer = {"stall": 0.2, "content": "done"}
    first, second = target.build(), target.build()
    limits = {target.name: 1}
    clients = [
        LLMClient(p, max_concurrent=8, concurrency=limits, backoff_seconds=0.001)
        for p in (first, second, first)
    ]
    await asyncio.gather(*(c.chat(req()) for c in clients))
    assert len(target.chats()) == 3
    assert target.server.max_stalled == 1, "two providers, three clients, one slot in the process"
    await first.aclose()
    await second.aclose()


def test_retry_after_forms_and_the_wait_cap() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from core.llm.errors import parse_retry_after

    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "7"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (parse_retry_after({"Retry-After": later}) or 0) <= 30
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


async def test_a_long_retry_after_is_capped_by_the_max_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeOpenAI([MODEL]) as server:
        server.answers = [
            {"status": 429, "error": "slow down", "headers": {"Retry-After": "3600"}},
            "ok",
        ]
        provider = OpenAICompatProvider(
            server.base_url, None, timeout_seconds=5, connect_timeout_seconds=1
        )
        client = LLMClient(provider, max_retries=1, backoff_seconds=0.001, max_backoff_seconds=0.2)
        with caplog.at_level(logging.WARNING, logger="core.llm.client"):
            assert (await client.chat(req())).content == "ok"
        await provider.aclose()
    assert any("retrying in 0.20s" in r.getMessage() for r in caplog.records)


async def test_anthropic_endpoint_without_structured_outputs_falls_back_to_the_prompt() -> None:
    def refuse_format(body: dict[str, Any]) -> dict[str, Any]:
        if "output_config" in body:
            return {"status": 400, "error": "output_config: Extra inputs are not permitted"}
        return {"content": json.dumps({"answer": "ok", "count": 4})}

    with FakeAnthropic([MODEL], api_key=KEY) as server:
        server.default_answer = refuse_format
        provider = AnthropicProvider(
            server.base_url, KEY, timeout_seconds=5, connect_timeout_seconds=1
        )
        try:
            first = await provider.chat(req(json_schema=SCHEMA))
            second = await provider.chat(req(json_schema=SCHEMA))
        finally:
            await provider.aclose()
    assert json.loads(first.content) == json.loads(second.content) == {"answer": "ok", "count": 4}
    sent = ["output_config" in body for body in server.messages()]
    assert sent == [True, False, False], "refused once, then asked in the prompt"
    assert '"count"' in server.messages()[1]["system"]


async def test_a_400_that_is_not_about_the_format_is_not_retried_in_another_mode() -> None:
    with FakeOpenAI([MODEL]) as server:
        server.answers = [{"status": 400, "error": "maximum context length is 8192 tokens"}]
        provider = OpenAICompatProvider(
            server.base_url, None, timeout_seconds=5, connect_timeout_seconds=1
        )
        try:
            with pytest.raises(LLMError, match="maximum context length"):
                await provider.chat(req(json_schema=SCHEMA))
        finally:
            await provider.aclose()
    assert len(server.chats()) == 1


async def test_a_server_without_stream_usage_still_streams_and_usage_is_estimated() -> None:
    with FakeOpenAI([MODEL]) as server:
        server.supports_stream_options = False
        server.answers = ["x" * 350, "y" * 35]
        provider = OpenAICompatProvider(
            server.base_url, None, timeout_seconds=5, connect_timeout_seconds=1
        )
        try:
            first = await provider.chat(req(), on_text=lambda _t: None)
            second = await provider.chat(req(), on_text=lambda _t: None)
        finally:
            await provider.aclose()
    assert (first.content, second.content) == ("x" * 350, "y" * 35)
    assert first.completion_tokens == 100 and second.completion_tokens == 10  # 3.5 chars a token
    assert ["stream_options" in c for c in server.chats()] == [True, False, False]
