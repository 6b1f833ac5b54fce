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
# replay_path, replay_strict and llm (the LLMConfig section, or None); it should accept
# **kwargs so new settings do not break it.
ProviderFactory = Callable[..., LLMProvider]
_REGISTRY: dict[str, ProviderFactory] = {}


def _key(llm: Any, env_name: str) -> str | None:
    from config.secrets import api_key

    return api_key(env_name, getattr(llm, "secrets_file", None))


def _ollama(
    *,
    host: str,
    timeout_seconds: float,
    connect_timeout_seconds: float,
    llm: Any = None,
    **_: Any,
) -> LLMProvider:
    from core.llm.ollama import OllamaProvider

    # The Ollama client reads OLLAMA_API_KEY from the environment itself; only a key from the
    # secrets file has to be handed over.
    secrets_file = getattr(llm, "secrets_file", None)
    key = _key(llm, "OLLAMA_API_KEY") if secrets_file else None
    return OllamaProvider(host, timeout_seconds, connect_timeout_seconds, api_key=key)


def _openai(
    *, timeout_seconds: float, connect_timeout_seconds: float, llm: Any = None, **_: Any
) -> LLMProvider:
    from config.schema import OpenAIConfig
    from core.llm.openai_compat import OpenAICompatProvider

    section = getattr(llm, "openai", None) or OpenAIConfig()
    return OpenAICompatProvider(
        section.base_url,
        _key(llm, section.api_key_env),
        timeout_seconds=timeout_seconds,
        connect_timeout_seconds=connect_timeout_seconds,
        structured_output=section.structured_output,
        key_env=section.api_key_env,
    )


def _anthropic(
    *, timeout_seconds: float, connect_timeout_seconds: float, llm: Any = None, **_: Any
) -> LLMProvider:
    from config.schema import AnthropicConfig
    from core.llm.anthropic import AnthropicProvider

    section = getattr(llm, "anthropic", None) or AnthropicConfig()
    return AnthropicProvider(
        section.base_url,
        _key(llm, section.api_key_env),
        timeout_seconds=timeout_seconds,
        connect_timeout_seconds=connect_timeout_seconds,
        key_env=section.api_key_env,
    )


def _replay(
    *, replay_path: str | Path | None = None, replay_strict: bool = False, **_: Any
) -> LLMProvider:
    from core.llm.replay import ReplayProvider

    if replay_path is None:
        raise ConfigError("--provider replay needs --replay FILE")
    return ReplayProvider(replay_path, strict=replay_strict)


_BUILTIN: dict[str, ProviderFactory] = {
    "ollama": _ollama,
    "openai": _openai,
    "anthropic": _anthropic,
    "replay": _replay,
}


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
            f"Unknown LLM provider '{name}'; known providers: {', '.join(known_providers())} "
            "(or auto: each model's models.yaml provider)"
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
    llm: Any = None,
) -> LLMProvider:
    """Build the named provider, wrapped in a CassetteRecorder when record_path is given."""
    provider = _factory(name)(
        host=host,
        timeout_seconds=timeout_seconds,
        connect_timeout_seconds=connect_timeout_seconds,
        replay_path=replay_path,
        replay_strict=replay_strict,
        llm=llm,
    )
    if record_path is not None:
        return CassetteRecorder(record_path, provider)
    return provider
