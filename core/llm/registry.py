"""Chooses a chat provider by name: built-ins, registered factories and entry-point plugins."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.llm.base import LLMProvider
from core.llm.replay import CassetteRecorder

ENTRY_POINT_GROUP = "orchestrator.providers"

# A factory is called with keyword arguments host, timeout_seconds, connect_timeout_seconds,
# replay_path and replay_strict; it should accept **kwargs so new settings do not break it.
ProviderFactory = Callable[..., LLMProvider]
_REGISTRY: dict[str, ProviderFactory] = {}


def _ollama(
    *, host: str, timeout_seconds: float, connect_timeout_seconds: float, **_: Any
) -> LLMProvider:
    from core.llm.ollama import OllamaProvider

    return OllamaProvider(host, timeout_seconds, connect_timeout_seconds)


def _replay(
    *, replay_path: str | Path | None = None, replay_strict: bool = False, **_: Any
) -> LLMProvider:
    from core.llm.replay import ReplayProvider

    if replay_path is None:
        raise ConfigError("--provider replay needs --replay FILE")
    return ReplayProvider(replay_path, strict=replay_strict)


_BUILTIN: dict[str, ProviderFactory] = {"ollama": _ollama, "replay": _replay}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Make a provider factory available under `name` (overrides a built-in of that name)."""
    _REGISTRY[name] = factory


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_providers() -> list[str]:
    """Every provider name make_provider accepts."""
    return sorted(set(_BUILTIN) | set(_REGISTRY) | set(_plugins()))


def _factory(name: str) -> ProviderFactory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return _BUILTIN[name]
    plugin = _plugins().get(name)
    if plugin is None:
        raise ConfigError(
            f"Unknown LLM provider '{name}'; known providers: {', '.join(known_providers())}"
        )
    try:
        factory: ProviderFactory = plugin.load()
    except Exception as error:  # a broken plugin is a configuration problem
        raise ConfigError(
            f"LLM provider plugin '{name}' ({plugin.value}) failed to load: {error}"
        ) from error
    _REGISTRY[name] = factory
    return factory


def make_provider(
    name: str,
    *,
    host: str,
    timeout_seconds: float,
    connect_timeout_seconds: float,
    replay_path: str | Path | None = None,
    replay_strict: bool = False,
    record_path: str | Path | None = None,
) -> LLMProvider:
    """Build the named provider, wrapped in a CassetteRecorder when record_path is given."""
    provider = _factory(name)(
        host=host,
        timeout_seconds=timeout_seconds,
        connect_timeout_seconds=connect_timeout_seconds,
        replay_path=replay_path,
        replay_strict=replay_strict,
    )
    if record_path is not None:
        return CassetteRecorder(record_path, provider)
    return provider
