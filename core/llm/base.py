"""The provider-neutral chat interface: requests, responses and the provider protocol."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import PromptTooLargeError

CHARS_PER_TOKEN = 3.5
TOKENS_PER_MESSAGE = 4  # chat-template overhead per message

# Called with batches of streamed text (never one call per token) so subscribers are not flooded.
TokenSink = Callable[[str], None]


@dataclass(frozen=True)
class ChatRequest:
    """One chat call; role/phase/attempt identify it for the ledger and for replay matching."""

    role: str  # "planner" | "executor" | ...
    model: str
    messages: list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": str}]
    json_schema: dict[str, Any] | None = None  # structured output: the answer must match it
    temperature: float | None = None
    max_tokens: int | None = None
    context_window: int | None = None  # the model's context length, to size num_ctx
    run_id: str | None = None
    phase: str | None = None  # the phase's plan id, e.g. "phase-002"
    attempt: int | None = None
    repair: int = 0  # 0 for the first ask, 1 for the planner's repair round


@dataclass(frozen=True)
class ChatResponse:
    content: str
    model: str
    provider: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: float = 0.0
    cached: bool = False  # answered from the orchestrator's response cache (costs nothing)
    cached_tokens: int = 0  # prompt tokens the provider served from its own prompt cache
    raw: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False  # the answer stopped at its token limit (finish reason "length")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    present: bool
    context_length: int | None = None
    capabilities: list[str] = field(default_factory=list)


class LLMProvider(Protocol):
    """What every chat provider offers; errors are raised as core.errors.LLMError subclasses."""

    name: str

    async def chat(
        self, request: ChatRequest, on_text: TokenSink | None = None
    ) -> ChatResponse: ...

    async def model_info(self, model: str) -> ModelInfo: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """A rough token count of a text (3.5 characters per token), for servers that report none."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A rough token count of the prompt (chars / 3.5 plus per-message overhead)."""
    chars = sum(len(m.get("content", "")) for m in request.messages)
    if request.json_schema is not None:
        chars += len(json.dumps(request.json_schema))
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(request.messages)


def check_prompt_fits(request: ChatRequest) -> int:
    """The prompt's estimated tokens; PromptTooLargeError when it exceeds the context window."""
    prompt = estimate_prompt_tokens(request)
    window = request.context_window
    if window is not None and prompt > window:
        raise prompt_too_large(request.model, prompt, window, estimated=True)
    return prompt


def prompt_too_large(
    model: str, prompt: int | None, window: int | None, *, estimated: bool, where: str = ""
) -> PromptTooLargeError:
    """The one message for a prompt past the context: "the prompt (N tokens) does not fit the
    server's context (M)", with what to do; never retried (the same prompt fails again)."""
    size = f"~{prompt}" if estimated and prompt is not None else str(prompt or "?")
    server = f" ({where})" if where else ""
    return PromptTooLargeError(
        f"Model {model}: the prompt ({size} tokens) does not fit the server's context "
        f"({window or '?'}){server}. Shorten the task or the retrieved context "
        "(rag.max_context_tokens), serve the model with a larger context, or pick a model with "
        "a larger context window; "
        "the prompt is never truncated silently."
    )


def token_limit_message(request: ChatRequest, response: ChatResponse) -> str:
    """What to say when an answer was cut off by max_tokens: the limit and the key to raise."""
    limit = request.max_tokens or response.completion_tokens or "?"
    return (
        f"the answer of model {request.model} hit its token limit ({limit}) and was cut off; "
        f"raise models.{request.model}.max_tokens in models.yaml"
    )


def partial_response(
    request: ChatRequest, provider: str, pieces: list[str], started: float, prompt_tokens: int = 0
) -> ChatResponse:
    """What a stream that broke off had cost: the prompt and the text received so far
    (estimated where the server sent no usage), so usage and budgets count it."""
    import time

    text = "".join(pieces)
    return ChatResponse(
        content=text,
        model=request.model,
        provider=provider,
        prompt_tokens=prompt_tokens or estimate_prompt_tokens(request),
        completion_tokens=estimate_tokens(text),
        duration_ms=(time.monotonic() - started) * 1000.0,
        raw={"partial": True},
    )
