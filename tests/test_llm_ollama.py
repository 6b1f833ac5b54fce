"""OllamaProvider and LLMClient against a real HTTP server speaking the Ollama wire protocol."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from core.errors import LLMError, LLMRetriableError, ModelNotFoundError
from core.llm.base import ChatRequest, ChatResponse
from core.llm.client import LLMClient
from core.llm.ollama import OllamaProvider
from tests.fakes.ollama_server import FakeOllama  # the fake_ollama fixture comes from conftest.py

MODEL = "test-model"


def req(content: str = "hello", **kwargs: object) -> ChatRequest:
    return ChatRequest(
        role="executor",
        model=kwargs.pop("model", MODEL),  # type: ignore[arg-type]
        messages=[{"role": "user", "content": content}],
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def provider(fake_ollama: FakeOllama) -> AsyncIterator[OllamaProvider]:
    prov = OllamaProvider(fake_ollama.url, timeout_seconds=5, connect_timeout_seconds=1)
    yield prov
    await prov.aclose()


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def put(self, key: str, value: str) -> None:
        self.data[key] = value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_streamed_chat_batches_text(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    content = "".join(f"token{i:03d} " for i in range(120))  # 1080 chars
    fake_ollama.stream_pieces = 60
    fake_ollama.chat_answers = [{"content": content, "prompt_eval_count": 11, "eval_count": 60}]
    batches: list[str] = []
    response = await provider.chat(req(), on_text=batches.append)
    assert response.content == content
    assert "".join(batches) == content
    assert 1 <= len(batches) < 60  # batched, never one call per piece
    assert (response.prompt_tokens, response.completion_tokens) == (11, 60)
    assert response.provider == "ollama"
    assert fake_ollama.chats()[0]["stream"] is True


async def test_unstreamed_chat(fake_ollama: FakeOllama, provider: OllamaProvider) -> None:
    fake_ollama.chat_answers = [
        {"content": "plain answer", "prompt_eval_count": 5, "eval_count": 3}
    ]
    response = await provider.chat(req(temperature=0.2, max_tokens=300))
    assert response.content == "plain answer"
    assert (response.prompt_tokens, response.completion_tokens) == (5, 3)
    assert response.duration_ms > 0
    body = fake_ollama.chats()[0]
    assert body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert body["options"]["temperature"] == 0.2
    assert body["options"]["num_predict"] == 300
    assert "format" not in body


async def test_structured_output_sends_schema(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    fake_ollama.chat_answers = ['{"a": "x"}']
    await provider.chat(req(json_schema=schema))
    assert fake_ollama.chats()[0]["format"] == schema


async def test_num_ctx_is_sized_from_the_prompt(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    fake_ollama.chat_answers = ["a", "b", "c"]
    await provider.chat(req("x" * 100, max_tokens=100))
    await provider.chat(req("x" * 35_000, max_tokens=1000))  # ~10k prompt tokens
    await provider.chat(req("x" * 35_000, max_tokens=1000, context_window=10_500))
    small, large, capped = (b["options"]["num_ctx"] for b in fake_ollama.chats())
    assert small == 2048
    assert large % 1024 == 0 and large >= 10_000 + 1000
    assert capped == 10_500


async def test_prompt_too_large_raises_without_calling(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    with pytest.raises(LLMError) as caught:
        await provider.chat(req("x" * 40_000, context_window=4096))
    error = caught.value
    assert not isinstance(error, LLMRetriableError)
    assert "does not fit" in str(error) and MODEL in str(error) and "4096" in str(error)
    assert fake_ollama.chats() == []


@pytest.mark.parametrize("stream", [False, True])
async def test_missing_model_says_how_to_pull(provider: OllamaProvider, stream: bool) -> None:
    with pytest.raises(ModelNotFoundError, match="run: ollama pull nope:7b"):
        await provider.chat(req(model="nope:7b"), on_text=(lambda _t: None) if stream else None)


@pytest.mark.parametrize("stream", [False, True])
async def test_unreachable_host_is_retriable_and_named(stream: bool) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    prov = OllamaProvider(host, timeout_seconds=2, connect_timeout_seconds=1)
    try:
        with pytest.raises(LLMRetriableError) as caught:
            await prov.chat(req(), on_text=(lambda _t: None) if stream else None)
    finally:
        await prov.aclose()
    assert host in str(caught.value)
    assert "ollama serve" in str(caught.value) and "OLLAMA_HOST" in str(caught.value)


async def test_client_error_is_not_retried(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    fake_ollama.chat_answers = [{"status": 400, "error": "invalid format"}, "unused"]
    client = LLMClient(provider, max_retries=3, backoff_seconds=0)
    with pytest.raises(LLMError, match="invalid format") as caught:
        await client.chat(req())
    assert not isinstance(caught.value, LLMRetriableError)
    assert len(fake_ollama.chats()) == 1


async def test_500_then_success_is_retried(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    fake_ollama.chat_answers = [{"status": 500, "error": "runner crashed"}, "second time lucky"]
    usage: list[ChatResponse] = []

    async def on_usage(_request: ChatRequest, response: ChatResponse) -> None:
        usage.append(response)

    client = LLMClient(provider, max_retries=3, backoff_seconds=0, on_usage=on_usage)
    response = await client.chat(req())
    assert response.content == "second time lucky"
    assert len(fake_ollama.chats()) == 2
    assert [u.content for u in usage] == ["second time lucky"]
    assert client.provider_name == "ollama"


async def test_500_storm_exhausts_retries(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    fake_ollama.chat_answers = [{"status": 503, "error": "overloaded"}] * 5
    client = LLMClient(provider, max_retries=2, backoff_seconds=0)
    with pytest.raises(LLMRetriableError, match="overloaded"):
        await client.chat(req())
    assert len(fake_ollama.chats()) == 3


async def test_error_line_inside_a_stream_is_retriable(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    fake_ollama.chat_answers = [{"content": "partial", "stream_error": "model runner stopped"}]
    with pytest.raises(LLMRetriableError, match="model runner stopped"):
        await provider.chat(req(), on_text=lambda _t: None)


@pytest.mark.parametrize("stream", [False, True])
async def test_stall_past_timeout_is_retriable(fake_ollama: FakeOllama, stream: bool) -> None:
    fake_ollama.chat_answers = [{"stall": 30, "content": "too late"}]
    prov = OllamaProvider(fake_ollama.url, timeout_seconds=0.3, connect_timeout_seconds=1)
    try:
        with pytest.raises(LLMRetriableError, match="did not answer within"):
            await prov.chat(req(), on_text=(lambda _t: None) if stream else None)
    finally:
        await prov.aclose()


async def test_model_info_and_list(fake_ollama: FakeOllama, provider: OllamaProvider) -> None:
    fake_ollama.models = {MODEL: 8192, "qwen2.5-coder:7b": 32768}
    info = await provider.model_info("qwen2.5-coder:7b")
    assert info.present and info.context_length == 32768
    assert info.capabilities == ["completion"]
    missing = await provider.model_info("absent")
    assert not missing.present and missing.context_length is None
    assert await provider.list_models() == [MODEL, "qwen2.5-coder:7b"]


async def test_cache_hit_avoids_a_second_request(
    fake_ollama: FakeOllama, provider: OllamaProvider
) -> None:
    fake_ollama.chat_answers = ["cached answer"]
    cache = DictCache()
    usage: list[bool] = []

    async def on_usage(_request: ChatRequest, response: ChatResponse) -> None:
        usage.append(response.cached)

    client = LLMClient(provider, backoff_seconds=0, cache=cache, on_usage=on_usage)
    first = await client.chat(req(temperature=0.0))
    shown: list[str] = []
    second = await client.chat(req(temperature=0.0), on_text=shown.append)
    assert (first.cached, second.cached) == (False, True)
    assert second.content == "cached answer" and "".join(shown) == "cached answer"
    assert usage == [False, True]
    assert len(fake_ollama.chats()) == 1
    # Another temperature is another key: the provider is asked (and the script is empty).
    with pytest.raises(LLMError, match="no scripted chat answer left"):
        await client.chat(req(temperature=0.7))
