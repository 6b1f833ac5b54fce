"""The provider-neutral chat interface: requests, responses and the provider protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    cached: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


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
