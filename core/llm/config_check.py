"""Provider and model names of a loaded configuration, checked before anything runs: each problem
names the file (or env variable or flag) and the key path that set the bad name."""

from __future__ import annotations

from dataclasses import dataclass, field

from config.keys import DEFAULTS_LABEL
from config.loader import LoadedConfig
from config.schema import AnthropicConfig, LLMConfig, OpenAIConfig
from core.errors import ConfigError
from core.llm.registry import known_providers

AUTO = "auto"  # llm.provider value: each model is served by its models.yaml provider
EMBEDDING_PROVIDERS = ("onnx", "hash")  # in-process embedders of models.yaml entries
FREE_NAMES = ("ollama", "replay")  # any Ollama tag goes; a cassette answers whatever it holds
CHAT_ROLES = ("planner", "executor")


@dataclass
class NameCheck:
    """What is wrong (refused) and what is worth knowing (allowed) about the configured names."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def self_hosted(llm: LLMConfig, provider: str) -> bool:
    """A server at a base URL of the user's own (vLLM, LM Studio, a proxy) names its own models."""
    if provider == "openai":
        return llm.openai.base_url.rstrip("/") != OpenAIConfig().base_url.rstrip("/")
    if provider == "anthropic":
        return llm.anthropic.base_url.rstrip("/") != AnthropicConfig().base_url.rstrip("/")
    return False


def check_names(loaded: LoadedConfig) -> NameCheck:
    """Check llm.provider, every models.yaml entry's provider and the chat roles' model names."""
    result = NameCheck()
    known = known_providers()
    chosen = loaded.config.llm.provider
    if chosen != AUTO and chosen not in known:
        where = loaded.sources.get("llm.provider", DEFAULTS_LABEL)
        result.errors.append(
            f"{where}: llm.provider: unknown provider {chosen!r}; known: {AUTO}, {', '.join(known)}"
        )
    for name, entry in loaded.catalog.models.items():
        if entry.provider not in known and entry.provider not in EMBEDDING_PROVIDERS:
            where = loaded.catalog_sources.get(f"models.{name}.provider", DEFAULTS_LABEL)
            result.errors.append(
                f"{where}: models.{name}.provider: unknown provider {entry.provider!r}; "
                f"known: {', '.join([*known, *EMBEDDING_PROVIDERS])}"
            )
    for role in CHAT_ROLES:
        override: str | None = getattr(loaded.config.models, role, None)
        model = override or loaded.catalog.roles.get(role)
        if not model or model in loaded.catalog.models:
            continue
        if override:
            key, where = f"models.{role}", loaded.sources.get(f"models.{role}", DEFAULTS_LABEL)
        else:
            key, where = (
                f"roles.{role}",
                loaded.catalog_sources.get(f"roles.{role}", DEFAULTS_LABEL),
            )
        served_by = "ollama" if chosen == AUTO else chosen
        if served_by not in known:
            continue  # already reported above
        if served_by in FREE_NAMES or self_hosted(loaded.config.llm, served_by):
            if served_by == "ollama":
                result.notes.append(
                    f"{where}: {key}: {model!r} is not in models.yaml; it is used as an Ollama tag "
                    f"(`ollama pull {model}`; `orchestrator models` checks it)"
                )
            continue
        listed = sorted(n for n, m in loaded.catalog.models.items() if m.provider == served_by)
        result.errors.append(
            f"{where}: {key}: model {model!r} is not in models.yaml, and the {served_by} provider "
            f"serves only models listed there (its entries: {', '.join(listed) or 'none'}); "
            "add an entry to models.yaml beside your config.yaml, or pick a listed model"
        )
    return result


def ensure_names(loaded: LoadedConfig) -> NameCheck:
    """check_names, raising ConfigError with every problem when there is one."""
    result = check_names(loaded)
    if result.errors:
        raise ConfigError("\n".join(result.errors))
    return result
