"""Chat provider for a local or remote Ollama server, with num_ctx sizing and clear error mapping."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, NoReturn

import httpx
import ollama
import pydantic

from core.errors import LLMError, LLMRetriableError, ProviderMismatchError
from core.llm.base import (
    ChatRequest,
    ChatResponse,
    ModelInfo,
    TokenSink,
    check_prompt_fits,
    partial_response,
)
from core.llm.client import TextBatcher
from core.llm.errors import Endpoint, from_connection, from_status, from_timeout
from core.llm.secrets import scrubber

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_ANSWER_TOKENS = 2048  # answer budget when the request sets no max_tokens
CONTEXT_MARGIN_TOKENS = 256
MIN_NUM_CTX = 2048


def num_ctx_for(request: ChatRequest) -> int:
    """The num_ctx to send: prompt + answer + margin, rounded up to 1024, capped by the model."""
    prompt = check_prompt_fits(request)
    window = request.context_window
    answer = request.max_tokens if request.max_tokens is not None else DEFAULT_ANSWER_TOKENS
    wanted = prompt + answer + CONTEXT_MARGIN_TOKENS
    num_ctx = max(MIN_NUM_CTX, math.ceil(wanted / 1024) * 1024)
    if window is not None:
        num_ctx = min(num_ctx, window)
    return num_ctx


class OllamaProvider:
    """Talks to Ollama through the official async client, with explicit timeouts."""

    name = "ollama"

    def __init__(
        self,
        host: str,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        api_key: str | None = None,
    ) -> None:
        self.host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        self._timeout_seconds = timeout_seconds
        self._connect_timeout = connect_timeout_seconds
        # The client sends OLLAMA_API_KEY from the environment itself; a key from the secrets
        # file is passed the same way, as a Bearer header.
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._endpoint = Endpoint(
            label="Ollama",
            url=self.host,
            key_env="OLLAMA_API_KEY",
            missing_model_hint="run: ollama pull {model}",
            unreachable_hint="start it with `ollama serve`, or set llm.host / OLLAMA_HOST "
            "to where it runs",
            scrub=scrubber(api_key, os.environ.get("OLLAMA_API_KEY")),
        )
        self._client = ollama.AsyncClient(
            host=self.host,
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            headers=headers,
        )

    async def chat(self, request: ChatRequest, on_text: TokenSink | None = None) -> ChatResponse:
        """Send one chat request; stream into on_text (batched) when it is given."""
        options: dict[str, Any] = {"num_ctx": num_ctx_for(request)}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        started = time.monotonic()
        final: ollama.ChatResponse | None
        pieces: list[str] = []  # streamed text, kept so a broken stream's tokens still count
        try:
            if on_text is None:
                reply = await self._client.chat(
                    model=request.model,
                    messages=request.messages,
                    format=request.json_schema,
                    options=options,
                    stream=False,
                )
                content = reply.message.content or ""
                final = reply
            else:
                content, final = await self._stream(request, options, on_text, pieces)
        except Exception as error:  # noqa: BLE001 - every failure is mapped to the error tree
            spent = partial_response(request, self.name, pieces, started) if pieces else None
            await self._fail(error, request.model, spent=spent)
        duration_ms = (time.monotonic() - started) * 1000.0
        raw = final.model_dump(exclude={"message"}, mode="json") if final is not None else {}
        return ChatResponse(
            content=content,
            model=request.model,
            provider=self.name,
            prompt_tokens=int(getattr(final, "prompt_eval_count", None) or 0),
            completion_tokens=int(getattr(final, "eval_count", None) or 0),
            duration_ms=duration_ms,
            raw=raw,
            truncated=getattr(final, "done_reason", None) == "length",
        )

    async def _stream(
        self,
        request: ChatRequest,
        options: dict[str, Any],
        on_text: TokenSink,
        pieces: list[str],
    ) -> tuple[str, ollama.ChatResponse | None]:
        # Errors of a stream surface while iterating, not when chat() returns the generator.
        parts = await self._client.chat(
            model=request.model,
            messages=request.messages,
            format=request.json_schema,
            options=options,
            stream=True,
        )
        batcher = TextBatcher(on_text)
        last: ollama.ChatResponse | None = None
        try:
            async for part in parts:
                text = part.message.content or ""
                if text:
                    pieces.append(text)
                    batcher.add(text)
                last = part
        finally:
            batcher.flush()
        return "".join(pieces), last

    async def model_info(self, model: str) -> ModelInfo:
        """Whether the model is present, its context length and capabilities (via /api/show)."""
        try:
            shown = await self._client.show(model)
        except ollama.ResponseError as error:
            if _missing_model(error):
                return ModelInfo(name=model, present=False)
            await self._fail(error, model)
        except Exception as error:  # noqa: BLE001
            self._raise_mapped(error, model)
        info = dict(shown.modelinfo or {})
        return ModelInfo(
            name=model,
            present=True,
            context_length=_context_length(info),
            capabilities=list(shown.capabilities or []),
        )

    async def list_models(self) -> list[str]:
        """Names of the models the server has pulled (via /api/tags)."""
        try:
            listed = await self._client.list()
        except Exception as error:  # noqa: BLE001
            await self._fail(error, "")
        return [m.model for m in listed.models if m.model]

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]

    async def _fail(
        self, error: BaseException, model: str, spent: ChatResponse | None = None
    ) -> NoReturn:
        """Raise the mapped error; a 404 that is not Ollama's "model not found" means the host
        is another kind of server, and the message says which (asked once, on this path only)."""
        if (
            isinstance(error, ollama.ResponseError)
            and error.status_code == 404
            and not _missing_model(error)
        ):
            answered = await identify_server(self.host, self._connect_timeout)
            raise ProviderMismatchError(
                f"{self.host} is not an Ollama server: its Ollama API (/api/...) answered "
                f"HTTP 404 ({self._endpoint.scrub(_error_text(error))[:200]}); {answered}. "
                f"Point llm.host (or --host, OLLAMA_HOST) at Ollama, or use this server with "
                f"its own provider, e.g. --provider openai --base-url {self.host.rstrip('/')}/v1"
            ) from error
        self._raise_mapped(error, model, spent=spent)

    def _raise_mapped(
        self, error: BaseException, model: str, spent: ChatResponse | None = None
    ) -> NoReturn:
        """Translate client, transport and HTTP errors into the orchestrator's error tree."""
        try:
            self._map(error, model)
        except LLMError as mapped:
            if spent is not None:
                mapped.spent = spent  # type: ignore[attr-defined]
            raise

    def _map(self, error: BaseException, model: str) -> NoReturn:
        endpoint = self._endpoint
        if isinstance(error, LLMError):
            raise error
        if isinstance(error, httpx.TimeoutException):
            connect = isinstance(error, httpx.ConnectTimeout)
            raise from_timeout(endpoint, self._timeout_seconds, connect) from error
        if isinstance(error, (ConnectionError, httpx.ConnectError)):
            raise from_connection(endpoint, error) from error
        if isinstance(error, ollama.ResponseError):
            status = error.status_code
            message = str(error.error)
            if status != 404 and "not found" in message.lower() and status < 500:
                status = 404  # older servers answer a missing model with 400 "not found"
            raise from_status(endpoint, status, message, model) from error
        if isinstance(error, httpx.TransportError):
            raise LLMRetriableError(
                f"The connection to Ollama at {self.host} broke: {type(error).__name__}: "
                f"{endpoint.scrub(str(error))}"
            ) from error
        if isinstance(error, pydantic.ValidationError):
            raise LLMError(
                f"Invalid request or answer for Ollama model '{model}': {error}"
            ) from error
        if isinstance(error, json.JSONDecodeError):
            raise LLMRetriableError(
                f"Ollama at {self.host} sent a line that is not JSON: {error}"
            ) from error
        raise error


def _error_text(error: ollama.ResponseError) -> str:
    """The server's error text (an OpenAI-style error object gives its message)."""
    detail: Any = error.error
    if isinstance(detail, dict):
        detail = detail.get("message") or detail
    return str(detail)


def _missing_model(error: ollama.ResponseError) -> bool:
    """Ollama's own answer for a model it has not pulled ("model 'x' not found")."""
    text = str(error.error).lower()
    return "model" in text and "not found" in text


async def identify_server(host: str, timeout_seconds: float) -> str:
    """What answers at a host that is not the server we expected: an OpenAI-compatible server
    (with the models it lists), or only its HTTP status and Server header."""
    url = host.rstrip("/") + "/v1/models"
    try:
        async with httpx.AsyncClient(timeout=max(1.0, timeout_seconds)) as client:
            reply = await client.get(url)
    except httpx.HTTPError as error:
        return f"GET {url} failed too ({type(error).__name__})"
    server = reply.headers.get("server")
    software = f" ({server})" if server else ""
    try:
        data = reply.json()
    except ValueError:
        data = None
    if reply.status_code == 200 and isinstance(data, dict) and isinstance(data.get("data"), list):
        ids = [str(m.get("id")) for m in data["data"] if isinstance(m, dict) and m.get("id")]
        owners = {str(m.get("owned_by")) for m in data["data"] if isinstance(m, dict)}
        owner = f", owned by {', '.join(sorted(owners - {'None'}))}" if owners - {"None"} else ""
        listed = ", ".join(ids[:5]) or "no models"
        return f"what answered is an OpenAI-compatible server{software} serving {listed}{owner}"
    return f"GET {url} answered HTTP {reply.status_code}{software}"


def _context_length(info: dict[str, Any]) -> int | None:
    """The "<arch>.context_length" value of /api/show's model_info, if any."""
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if arch else None
    if value is None:
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
