"""The engine's one door to chat models: concurrency limit, response cache, retries and usage."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.errors import LLMError, LLMRetriableError
from core.llm.base import ChatRequest, ChatResponse, LLMProvider, ModelInfo, TokenSink

log = logging.getLogger(__name__)

UsageHook = Callable[[ChatRequest, ChatResponse], Awaitable[None]]
# Awaited before a request goes to the provider (after a cache miss); budgets pause here.
BeforeCallHook = Callable[[ChatRequest], Awaitable[None]]

# Process-wide call slots per event loop, provider and limit, shared by every client and run.
_SLOTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Semaphore]
]
_SLOTS = weakref.WeakKeyDictionary()


def provider_slots(provider: str, limit: int) -> asyncio.Semaphore:
    """The semaphore every client in this process uses for calls to `provider`."""
    per_loop = _SLOTS.setdefault(asyncio.get_running_loop(), {})
    key = (provider, max(1, limit))
    if key not in per_loop:
        per_loop[key] = asyncio.Semaphore(key[1])
    return per_loop[key]


def routed_name(provider: Any, model: str) -> str:
    """The name of the provider that serves `model` (a router answers per model)."""
    route = getattr(provider, "provider_name_for", None)
    return str(route(model)) if callable(route) else str(provider.name)


class RetryAfterWait:
    """Exponential backoff with jitter that waits at least what a 429's Retry-After asked for."""

    def __init__(self, initial: float, max_wait: float) -> None:
        self._max = max(0.0, max_wait)
        self._backoff = wait_exponential_jitter(
            multiplier=initial, max=self._max, jitter=initial, exp_base=2
        )

    def __call__(self, state: RetryCallState) -> float:
        wait = float(self._backoff(state))
        error = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(error, "retry_after", None)
        if asked is not None:
            wait = max(wait, float(asked))
        return min(wait, self._max)


class ResponseCache(Protocol):
    """Key-value store for answers, so an identical request is not paid for twice."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...


class TextBatcher:
    """Collects streamed text and hands it on in batches, never once per token.

    The first piece goes out at once (the live view shows the model has started); later pieces
    leave when the batch is large or old enough, and a timer flushes a batch that would otherwise
    wait for the next token (a model pausing mid-answer still shows what it wrote).
    """

    def __init__(
        self, sink: TokenSink | None, interval_seconds: float = 0.05, max_chars: int = 200
    ) -> None:
        self._sink = sink
        self._interval = interval_seconds
        self._max_chars = max_chars
        self._pending: list[str] = []
        self._pending_chars = 0
        self._last_flush = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def add(self, text: str) -> None:
        """Queue text and flush when the batch is old or large enough (or soon, by timer)."""
        if not text or self._sink is None:
            return
        self._pending.append(text)
        self._pending_chars += len(text)
        now = time.monotonic()
        if self._pending_chars >= self._max_chars or now - self._last_flush >= self._interval:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Hand whatever is pending to the sink."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sink is None or not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        self._last_flush = time.monotonic()
        self._sink(text)


class LineJoiner:
    """Joins streamed pieces of a model's answer into whole lines, the unit the run log stores.

    Each line goes to the sink without its newline once it is complete; a partial line goes out
    when the model pauses for `pause_seconds`, grows past `max_chars`, or the answer ends (flush).
    """

    def __init__(self, sink: TokenSink, pause_seconds: float = 1.0, max_chars: int = 2000) -> None:
        self._sink = sink
        self._pause = pause_seconds
        self._max_chars = max_chars
        self._partial = ""
        self._timer: asyncio.TimerHandle | None = None

    def add(self, text: str) -> None:
        """Take a piece of the answer; hand on every line it completes."""
        if not text:
            return
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._sink(line.rstrip("\r"))
        while len(self._partial) >= self._max_chars:
            self._sink(self._partial[: self._max_chars])
            self._partial = self._partial[self._max_chars :]
        self._cancel_timer()
        if self._partial:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self._pause, self.flush)

    def flush(self) -> None:
        """Hand on the partial line, if any (the model paused or the answer ended)."""
        self._cancel_timer()
        if self._partial:
            line, self._partial = self._partial, ""
            self._sink(line.rstrip("\r"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def emit_in_batches(sink: TokenSink | None, text: str, batches: int = 4) -> None:
    """Send a finished text to a sink in a few pieces, so live views show it like a stream."""
    if sink is None or not text:
        return
    size = max(200, -(-len(text) // batches))
    for start in range(0, len(text), size):
        sink(text[start : start + size])


def cache_key(provider: str, request: ChatRequest) -> str:
    """A stable hash of everything that decides the answer."""
    payload = {
        "provider": provider,
        "model": request.model,
        "messages": request.messages,
        "json_schema": request.json_schema,
        "temperature": request.temperature,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class LLMClient:
    """Wraps one provider with a semaphore, an optional cache, tenacity retries and a usage hook."""

    def __init__(
        self,
        provider: LLMProvider,
        *,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 20.0,
        max_concurrent: int = 2,
        concurrency: Mapping[str, int] | None = None,
        cache: ResponseCache | None = None,
        on_usage: UsageHook | None = None,
        before_call: BeforeCallHook | None = None,
    ) -> None:
        self._provider = provider
        self._max_retries = max(0, max_retries)
        self._backoff = max(0.0, backoff_seconds)
        self._max_backoff = max(0.0, max_backoff_seconds)
        self._max_concurrent = max(1, max_concurrent)
        self._concurrency = dict(concurrency or {})
        self._cache = cache
        self._on_usage = on_usage
        self._before_call = before_call

    @property
    def provider_name(self) -> str:
        """The wrapped provider's name ("ollama", "replay", ...)."""
        return self._provider.name

    @property
    def provider(self) -> LLMProvider:
        """The wrapped provider, for calls the client does not wrap."""
        return self._provider

    async def chat(self, request: ChatRequest, on_text: TokenSink | None = None) -> ChatResponse:
        """Answer a request from the cache or the provider, retrying only retriable failures.

        `on_text` receives the answer as it streams, in whole lines (see LineJoiner).
        """
        if on_text is None:
            return await self._chat(request, None)
        lines = LineJoiner(on_text)
        try:
            return await self._chat(request, lines.add)
        finally:
            lines.flush()

    async def _chat(self, request: ChatRequest, on_text: TokenSink | None) -> ChatResponse:
        key = cache_key(self.provider_name, request) if self._cache is not None else None
        if self._cache is not None and key is not None:
            cached = await self._cached(key, request)
            if cached is not None:
                emit_in_batches(on_text, cached.content)
                await self._report(request, cached)
                return cached
        if self._before_call is not None:
            await self._before_call(request)
        response = await self._call_with_retries(request, on_text)
        if self._cache is not None and key is not None:
            await self._cache.put(key, _dump(response))
        await self._report(request, response)
        return response

    async def model_info(self, model: str) -> ModelInfo:
        """Ask the provider whether a model exists and how large its context is."""
        return await self._provider.model_info(model)

    async def aclose(self) -> None:
        """Close the provider's connections."""
        await self._provider.aclose()

    async def _call_with_retries(
        self, request: ChatRequest, on_text: TokenSink | None
    ) -> ChatResponse:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(LLMRetriableError),
            stop=stop_after_attempt(self._max_retries + 1),
            wait=RetryAfterWait(self._backoff, self._max_backoff),
            before_sleep=_log_retry,
            reraise=True,
        )
        name = routed_name(self._provider, request.model)
        slots = provider_slots(name, self._concurrency.get(name, self._max_concurrent))
        async for attempt in retrying:
            with attempt:
                # The slot is held per try, so a request waiting out its backoff blocks nobody.
                async with slots:
                    try:
                        return await self._provider.chat(request, on_text)
                    except LLMError as error:
                        # What a failed try cost (an answer that failed validation, the text
                        # streamed before a connection broke) still goes into the ledger.
                        spent = getattr(error, "spent", None)
                        if isinstance(spent, ChatResponse):
                            await self._report(request, spent)
                        raise
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    async def _cached(self, key: str, request: ChatRequest) -> ChatResponse | None:
        assert self._cache is not None
        stored = await self._cache.get(key)
        if stored is None:
            return None
        try:
            data = json.loads(stored)
            return ChatResponse(
                content=str(data["content"]),
                model=str(data.get("model") or request.model),
                provider=str(data.get("provider") or self.provider_name),
                prompt_tokens=int(data.get("prompt_tokens") or 0),
                completion_tokens=int(data.get("completion_tokens") or 0),
                cached_tokens=int(data.get("cached_tokens") or 0),
                duration_ms=0.0,
                cached=True,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable LLM cache entry %s", key[:12])
            return None

    async def _report(self, request: ChatRequest, response: ChatResponse) -> None:
        if self._on_usage is not None:
            await self._on_usage(request, response)


def _dump(response: ChatResponse) -> str:
    return json.dumps(
        {
            "content": response.content,
            "model": response.model,
            "provider": response.provider,
            "prompt_tokens": response.prompt_tokens,
            "completion_tokens": response.completion_tokens,
            "cached_tokens": response.cached_tokens,
        },
        ensure_ascii=False,
    )


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "LLM call failed (try %d), retrying in %.2fs: %s", state.attempt_number, wait, error
    )
