"""Chat provider for Anthropic's messages API through the official `anthropic` client.

Imported lazily (the SDK takes over a second to import). The SDK's own retries are off so only
LLMClient retries. System messages go to the `system` parameter; streamed answers arrive as SSE
`content_block_delta` events. JSON-schema requests use structured outputs (output_config) and
fall back to asking in the prompt when the endpoint refuses them; answers are validated, with
one repair round.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

from core.errors import LLMAuthError, LLMError, LLMRetriableError
from core.llm.base import (
    ChatRequest,
    ChatResponse,
    ModelInfo,
    TokenSink,
    check_prompt_fits,
    partial_response,
)
from core.llm.client import TextBatcher
from core.llm.errors import Endpoint, from_broken_stream, from_sdk_error
from core.llm.secrets import scrubber
from core.llm.structured import Messages, validated_json

DEFAULT_MAX_TOKENS = 4096  # the messages API requires max_tokens


class AnthropicProvider:
    """Talks to /v1/messages (streamed over SSE when a sink is given)."""

    name = "anthropic"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        key_env: str = "ANTHROPIC_API_KEY",
    ) -> None:
        import anthropic

        self.base_url = base_url.rstrip("/")
        self._key_env = key_env
        self._key_missing = not api_key
        self._timeout = timeout_seconds
        self._native_format = True  # structured outputs (output_config.format) until refused
        self._endpoint = Endpoint(
            label="Anthropic",
            url=self.base_url,
            key_env=key_env,
            unreachable_hint="check llm.anthropic.base_url and your network",
            scrub=scrubber(api_key),
        )
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or "missing",
            base_url=self.base_url,
            timeout=anthropic.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            max_retries=0,  # LLMClient retries; the SDK's own retries would multiply them
        )

    async def chat(self, request: ChatRequest, on_text: TokenSink | None = None) -> ChatResponse:
        """One messages call; JSON-schema requests are validated with one repair round."""
        self._require_key()
        check_prompt_fits(request)
        schema = request.json_schema
        if schema is None:
            return await self._complete(request, request.messages, None, on_text)
        if self._native_format:
            output_format = {"type": "json_schema", "schema": schema}

            async def native(messages: Messages) -> ChatResponse:
                return await self._complete(request, messages, output_format, on_text)

            try:
                first = await native(request.messages)
            except LLMError as error:
                if not self._format_refused(error):
                    raise
                self._native_format = False  # an endpoint without structured outputs
            else:
                return await validated_json(request, native, first=first, messages=request.messages)

        async def prompted(messages: Messages) -> ChatResponse:
            return await self._complete(request, messages, None, on_text)

        return await validated_json(request, prompted)

    @staticmethod
    def _format_refused(error: LLMError) -> bool:
        """Whether the API rejected output_config (a proxy or endpoint without structured outputs)."""
        import anthropic

        about_format = any(w in str(error).lower() for w in ("output_config", "format", "schema"))
        return isinstance(error.__cause__, anthropic.BadRequestError) and about_format

    async def _complete(
        self,
        request: ChatRequest,
        messages: Messages,
        output_format: dict[str, Any] | None,
        on_text: TokenSink | None,
    ) -> ChatResponse:
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        turns = [
            {"role": m["role"], "content": m["content"]}
            for m in messages
            if m.get("role") in ("user", "assistant")
        ]
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": turns,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            kwargs["system"] = system
        if output_format is not None:
            kwargs["output_config"] = {"format": output_format}
        # No temperature: this SDK's messages API no longer takes sampling parameters.
        started = time.monotonic()
        pieces: list[str] = []  # streamed text, kept so a broken stream's tokens still count
        try:
            if on_text is None:
                content, usage, stop = await self._unstreamed(kwargs)
            else:
                content, usage, stop = await self._streamed(kwargs, on_text, pieces)
        except Exception as error:  # noqa: BLE001 - every failure is mapped to the error tree
            spent = partial_response(request, self.name, pieces, started) if pieces else None
            self._raise_mapped(error, request.model, spent)
        return ChatResponse(
            content=content,
            model=request.model,
            provider=self.name,
            prompt_tokens=usage["input"] + usage["cache_read"] + usage["cache_write"],
            completion_tokens=usage["output"],
            cached_tokens=usage["cache_read"],
            duration_ms=(time.monotonic() - started) * 1000.0,
            raw={"stop_reason": stop},
            truncated=stop == "max_tokens",
        )

    async def _unstreamed(self, kwargs: dict[str, Any]) -> tuple[str, dict[str, int], str | None]:
        reply = await self._client.messages.create(**kwargs)
        text = "".join(
            block.text for block in reply.content if getattr(block, "type", "") == "text"
        )
        return text, _usage(reply.usage), reply.stop_reason

    async def _streamed(
        self, kwargs: dict[str, Any], on_text: TokenSink, pieces: list[str]
    ) -> tuple[str, dict[str, int], str | None]:
        stream = await self._client.messages.create(**kwargs, stream=True)
        batcher = TextBatcher(on_text)
        usage = _usage(None)
        stop: str | None = None
        try:
            async for event in stream:
                kind = getattr(event, "type", "")
                if kind == "message_start":
                    usage = _usage(event.message.usage)
                elif kind == "content_block_delta" and getattr(event.delta, "type", "") == (
                    "text_delta"
                ):
                    pieces.append(event.delta.text)
                    batcher.add(event.delta.text)
                elif kind == "message_delta":
                    stop = getattr(event.delta, "stop_reason", None) or stop
                    if getattr(event, "usage", None) is not None:
                        usage["output"] = int(getattr(event.usage, "output_tokens", 0) or 0)
        finally:
            batcher.flush()
        return "".join(pieces), usage, stop

    async def list_models(self) -> list[str]:
        """Model ids the API lists."""
        self._require_key()
        try:
            page = await self._client.models.list()
            return sorted(m.id for m in page.data)
        except Exception as error:  # noqa: BLE001
            self._raise_mapped(error, "")

    async def model_info(self, model: str) -> ModelInfo:
        """Whether the API knows the model (GET /v1/models/{model})."""
        self._require_key()
        import anthropic

        try:
            await self._client.models.retrieve(model)
        except anthropic.NotFoundError:
            return ModelInfo(name=model, present=False)
        except Exception as error:  # noqa: BLE001
            self._raise_mapped(error, model)
        return ModelInfo(name=model, present=True)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    def _require_key(self) -> None:
        if self._key_missing:
            raise LLMAuthError(
                f"No Anthropic API key: set {self._key_env} in the environment (or in the file "
                "llm.secrets_file points to)."
            )

    def _raise_mapped(
        self, error: BaseException, model: str, spent: ChatResponse | None = None
    ) -> NoReturn:
        import anthropic

        if isinstance(error, LLMError):
            raise error
        mapped = from_sdk_error(anthropic, error, self._endpoint, model, self._timeout)
        if mapped is None:
            raise error
        if spent is not None:
            if isinstance(mapped, LLMRetriableError) and isinstance(
                error, anthropic.APIConnectionError
            ):
                # Text had arrived: the connection broke mid-answer, it was reachable.
                mapped = from_broken_stream(self._endpoint, error.__cause__ or error)
            mapped.spent = spent  # type: ignore[attr-defined]
        raise mapped from error


def _usage(usage: Any) -> dict[str, int]:
    """Input, output, cache-read and cache-write token counts from an Anthropic usage object."""

    def figure(name: str) -> int:
        return int(getattr(usage, name, None) or 0) if usage is not None else 0

    return {
        "input": figure("input_tokens"),
        "output": figure("output_tokens"),
        "cache_read": figure("cache_read_input_tokens"),
        "cache_write": figure("cache_creation_input_tokens"),
    }
