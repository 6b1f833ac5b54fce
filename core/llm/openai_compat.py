"""Chat provider for OpenAI and OpenAI-compatible servers (vLLM, LM Studio, llama.cpp's server).

Uses the official `openai` client (imported lazily: it takes about half a second) with its own
retries off, so only LLMClient retries. Structured output asks for `json_schema`; a server that
rejects it gets `json_object`, then a plain prompt, each answer validated with one repair round.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import urlsplit

from core.errors import LLMAuthError, LLMError, LLMRetriableError
from core.llm.base import (
    ChatRequest,
    ChatResponse,
    ModelInfo,
    TokenSink,
    check_prompt_fits,
    estimate_tokens,
    partial_response,
    prompt_too_large,
)
from core.llm.client import TextBatcher
from core.llm.errors import Endpoint, from_broken_stream, from_sdk_error
from core.llm.secrets import scrubber
from core.llm.structured import Messages, extract_json, schema_error, validated_json

log = logging.getLogger(__name__)

OFFICIAL_HOST = "api.openai.com"
# Sent to servers that need no key (vLLM, LM Studio, llama.cpp): the client insists on one.
NO_KEY_PLACEHOLDER = "no-key-needed"
_FALLBACK = {"auto": "json_object", "json_schema": "json_object", "json_object": "prompt"}


class OpenAICompatProvider:
    """Talks to /v1/chat/completions (streamed over SSE when a sink is given)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        structured_output: str = "auto",
        key_env: str = "OPENAI_API_KEY",
    ) -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        self._official = urlsplit(self.base_url).hostname == OFFICIAL_HOST
        self._key_missing = not api_key
        self._key_env = key_env
        self._timeout = timeout_seconds
        self._structured = structured_output
        self._usage_in_stream = True  # stream_options.include_usage, until a server refuses it
        self._endpoint = Endpoint(
            label="OpenAI" if self._official else "OpenAI-compatible server",
            url=self.base_url,
            key_env=key_env,
            unreachable_hint="check llm.openai.base_url and that the server is running",
            scrub=scrubber(api_key),
        )
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY_PLACEHOLDER,
            base_url=self.base_url,
            timeout=openai.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            max_retries=0,  # LLMClient retries; the SDK's own retries would multiply them
        )

    # ---- chat ----------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, on_text: TokenSink | None = None) -> ChatResponse:
        """One chat completion; JSON-schema requests get structured output or validated JSON."""
        self._require_key()
        check_prompt_fits(request)
        if request.json_schema is None:
            return await self._complete(request, request.messages, None, on_text)
        while True:
            mode = self._structured
            try:
                return await self._structured_chat(request, mode, on_text)
            except LLMError as error:
                if not self._format_refused(error, mode):
                    raise
                self._structured = _FALLBACK[mode]
                log.warning(
                    "%s refused response_format for %s; asking with %s instead",
                    self._endpoint.where(),
                    request.model,
                    self._structured,
                )

    async def _structured_chat(
        self, request: ChatRequest, mode: str, on_text: TokenSink | None
    ) -> ChatResponse:
        """A JSON answer in one mode: json_schema (validated), json_object or prompt (both
        validated with one repair round)."""
        schema = request.json_schema
        assert schema is not None
        fmt: dict[str, Any] | None = None
        if mode in ("auto", "json_schema"):
            fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        elif mode == "json_object":
            fmt = {"type": "json_object"}

        async def call(messages: Messages) -> ChatResponse:
            return await self._complete(request, messages, fmt, on_text)

        if fmt is not None and fmt["type"] == "json_schema":
            first = await call(request.messages)
            if schema_error(first.content, schema) is None:
                return replace(first, content=extract_json(first.content))
            return await validated_json(request, call, first=first, messages=request.messages)
        return await validated_json(request, call)

    def _format_refused(self, error: LLMError, mode: str) -> bool:
        """Whether the server rejected the response_format (so a weaker mode may work)."""
        import openai

        cause = error.__cause__
        refused = isinstance(cause, (openai.BadRequestError, openai.UnprocessableEntityError))
        # Other 400s (a prompt past the context, a bad parameter) are not about the format.
        about_format = any(word in str(error).lower() for word in ("format", "schema", "json"))
        return refused and about_format and mode in ("auto", "json_object")

    async def _complete(
        self,
        request: ChatRequest,
        messages: Messages,
        response_format: dict[str, Any] | None,
        on_text: TokenSink | None,
    ) -> ChatResponse:
        kwargs: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            # OpenAI's newer models only take max_completion_tokens; compatible servers know max_tokens.
            key = "max_completion_tokens" if self._official else "max_tokens"
            kwargs[key] = request.max_tokens
        if response_format is not None:
            kwargs["response_format"] = response_format
        started = time.monotonic()
        pieces: list[str] = []  # streamed text, kept so a broken stream's tokens still count
        try:
            if on_text is None:
                content, usage, finish = await self._unstreamed(kwargs)
            else:
                content, usage, finish = await self._streamed(kwargs, on_text, pieces)
        except Exception as error:  # noqa: BLE001 - every failure is mapped to the error tree
            self._raise_mapped(error, request.model, spent=_spent(request, pieces, started))
        prompt, completion, cached = _usage_figures(usage)
        if usage is None:  # a server that reports no usage: estimate, so budgets still count
            prompt = sum(estimate_tokens(m.get("content", "")) for m in messages)
            completion = estimate_tokens(content)
        return ChatResponse(
            content=content,
            model=request.model,
            provider=self.name,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            duration_ms=(time.monotonic() - started) * 1000.0,
            raw={"usage_reported": usage is not None, "finish_reason": finish},
            truncated=finish == "length",
        )

    async def _unstreamed(self, kwargs: dict[str, Any]) -> tuple[str, Any, str | None]:
        reply = await self._client.chat.completions.create(**kwargs)
        if not reply.choices:
            raise LLMRetriableError(f"{self._endpoint.where()} answered with no choices")
        choice = reply.choices[0]
        return choice.message.content or "", reply.usage, choice.finish_reason

    async def _streamed(
        self, kwargs: dict[str, Any], on_text: TokenSink, pieces: list[str]
    ) -> tuple[str, Any, str | None]:
        import openai

        extra: dict[str, Any] = {}
        if self._usage_in_stream:
            extra["stream_options"] = {"include_usage": True}
        try:
            stream = await self._client.chat.completions.create(**kwargs, stream=True, **extra)
        except openai.BadRequestError as error:
            if not extra or "stream_options" not in str(error):
                raise
            # An older compatible server: stream without usage (it is estimated instead).
            self._usage_in_stream = False
            stream = await self._client.chat.completions.create(**kwargs, stream=True)
        batcher = TextBatcher(on_text)
        usage = None
        finish: str | None = None
        try:
            async for chunk in stream:
                for choice in chunk.choices or []:
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        pieces.append(text)
                        batcher.add(text)
                    finish = choice.finish_reason or finish
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
        finally:
            batcher.flush()
        return "".join(pieces), usage, finish

    # ---- models --------------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        """Model ids the server lists at /models."""
        return sorted(await self._listed())

    async def _listed(self) -> dict[str, int | None]:
        """Model ids at /models with the context length the server publishes for each
        (llama.cpp's `meta.n_ctx`; vLLM's `max_model_len`), None where it publishes none."""
        self._require_key()
        try:
            page = await self._client.models.list()
        except Exception as error:  # noqa: BLE001
            self._raise_mapped(error, "")
        return {m.id: _published_context(m) for m in page.data}

    async def model_info(self, model: str) -> ModelInfo:
        """Whether /models lists the model, and its context length where the server says;
        servers without /models count it as present."""
        try:
            listed = await self._listed()
        except LLMError as error:
            import openai

            if isinstance(error.__cause__, openai.NotFoundError):
                return ModelInfo(name=model, present=True)  # no /models endpoint to ask
            raise
        return ModelInfo(name=model, present=model in listed, context_length=listed.get(model))

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    # ---- errors --------------------------------------------------------------------------------

    def _require_key(self) -> None:
        if self._key_missing and self._official:
            raise LLMAuthError(
                f"No OpenAI API key: set {self._key_env} in the environment (or in the file "
                "llm.secrets_file points to). For a local OpenAI-compatible server set "
                "llm.openai.base_url instead."
            )

    def _raise_mapped(
        self, error: BaseException, model: str, spent: ChatResponse | None = None
    ) -> NoReturn:
        import openai

        if isinstance(error, LLMError):
            raise error
        mapped = _context_exceeded(error, model, self._endpoint.where())
        if mapped is None:
            mapped = from_sdk_error(openai, error, self._endpoint, model, self._timeout)
        if mapped is None:
            raise error
        if spent is not None:
            if isinstance(mapped, LLMRetriableError) and isinstance(
                error, openai.APIConnectionError
            ):
                # Text had arrived: the connection broke mid-answer, it was reachable.
                mapped = from_broken_stream(self._endpoint, error.__cause__ or error)
            mapped.spent = spent  # type: ignore[attr-defined]
        raise mapped from error


def _spent(request: ChatRequest, pieces: list[str], started: float) -> ChatResponse | None:
    """What a stream that broke after sending text cost (None when nothing arrived)."""
    return partial_response(request, "openai", pieces, started) if pieces else None


def _context_exceeded(error: BaseException, model: str, where: str) -> LLMError | None:
    """llama.cpp's and vLLM's answer to a prompt past the served context, as the one message."""
    body = getattr(error, "body", None)
    if getattr(error, "status_code", None) != 400 or not isinstance(body, dict):
        return None
    inner = body.get("error", body)
    if not isinstance(inner, dict):
        return None
    kind = str(inner.get("type") or "")
    text = str(inner.get("message") or "")
    if kind != "exceed_context_size_error" and "maximum context length" not in text:
        return None
    prompt = inner.get("n_prompt_tokens")
    window = inner.get("n_ctx")
    return prompt_too_large(
        model,
        int(prompt) if isinstance(prompt, int) else None,
        int(window) if isinstance(window, int) else None,
        estimated=False,
        where=f"{where} said: {text[:200]}",
    )


def _published_context(model: Any) -> int | None:
    """The context length a /models entry carries, if the server publishes one."""
    extra = getattr(model, "model_extra", None) or {}
    meta = extra.get("meta")
    value = meta.get("n_ctx") if isinstance(meta, dict) else None
    if value is None:
        value = extra.get("max_model_len") or extra.get("context_length")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _usage_figures(usage: Any) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens from an OpenAI usage object, zeros when absent."""
    if usage is None:
        return 0, 0, 0
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    return (
        int(getattr(usage, "prompt_tokens", None) or 0),
        int(getattr(usage, "completion_tokens", None) or 0),
        cached,
    )
