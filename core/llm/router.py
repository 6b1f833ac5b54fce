"""Sends each chat call to the provider that serves its model (planner on one, executor on another)."""

from __future__ import annotations

from collections.abc import Mapping

from core.llm.base import ChatRequest, ChatResponse, LLMProvider, ModelInfo, TokenSink


class RoutingProvider:
    """An LLMProvider over several: a model's provider is looked up by its tag, else the default."""

    name = "auto"

    def __init__(self, by_model: Mapping[str, LLMProvider], default: LLMProvider) -> None:
        self._by_model = dict(by_model)
        self._default = default

    def route(self, model: str) -> LLMProvider:
        """The provider that serves `model`."""
        return self._by_model.get(model, self._default)

    def provider_name_for(self, model: str) -> str:
        """The serving provider's name (for per-provider concurrency limits)."""
        return self.route(model).name

    async def chat(self, request: ChatRequest, on_text: TokenSink | None = None) -> ChatResponse:
        """Forwarded to the model's provider."""
        return await self.route(request.model).chat(request, on_text)

    async def model_info(self, model: str) -> ModelInfo:
        """Forwarded to the model's provider."""
        return await self.route(model).model_info(model)

    async def aclose(self) -> None:
        """Close every provider once."""
        seen: set[int] = set()
        for provider in [self._default, *self._by_model.values()]:
            if id(provider) not in seen:
                seen.add(id(provider))
                await provider.aclose()
