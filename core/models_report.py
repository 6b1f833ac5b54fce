"""`orchestrator models`: each configured model, its provider, whether the provider is reachable and
has the model, its context length and its price."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from config.catalog import ModelDef, ModelsCatalog
from config.schema import OrchestratorConfig
from core.errors import LLMError, OrchestratorError
from core.llm.base import LLMProvider
from core.llm.registry import make_provider

CHAT_PROVIDERS = ("ollama", "openai", "anthropic")
CHECK_TIMEOUT_SECONDS = 10.0


@dataclass
class ModelStatus:
    """One row of `orchestrator models`."""

    name: str
    provider: str
    tag: str
    roles: list[str]
    reachable: bool | None  # None: not checked (a local in-process model)
    present: bool | None
    context_length: int | None
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None
    capabilities: list[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _configured(
    config: OrchestratorConfig, catalog: ModelsCatalog
) -> list[tuple[ModelDef, list[str]]]:
    """Catalog entries plus role models that are raw tags, with the roles each one serves."""
    roles: dict[str, list[str]] = {}
    defs: dict[str, ModelDef] = dict(catalog.models)
    for role in dict.fromkeys([*catalog.roles, "planner", "executor", "embedder"]):
        try:
            model = catalog.resolve(role, getattr(config.models, role, None))
        except OrchestratorError:
            continue
        defs.setdefault(model.name, model)
        roles.setdefault(model.name, []).append(role)
    return [(model, roles.get(name, [])) for name, model in defs.items()]


def _missing_key(llm: Any, provider: str) -> str | None:
    """Why a cloud provider cannot be asked: its API key is not set (a server at a base URL of
    the user's own may need none)."""
    from config.secrets import api_key
    from core.llm.config_check import self_hosted

    if provider not in ("openai", "anthropic") or self_hosted(llm, provider):
        return None
    env_name = getattr(llm, provider).api_key_env
    if api_key(env_name, llm.secrets_file):
        return None
    return f"not checked: no API key (set {env_name}, or llm.secrets_file)"


def _matches(tag: str, listed: set[str]) -> bool:
    """Ollama lists `name:latest` for a model pulled as `name`."""
    return tag in listed or f"{tag}:latest" in listed


async def _probe(provider: LLMProvider) -> tuple[set[str] | None, str]:
    """The model names a provider lists, or None and why it could not be asked."""
    lister = getattr(provider, "list_models", None)
    if lister is None:
        return None, "this provider cannot list its models"
    try:
        names = await asyncio.wait_for(lister(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return None, f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
    except LLMError as error:
        return None, str(error)
    return set(names), ""


def routed(model: ModelDef, llm_provider: str) -> ModelDef:
    """The model as a run routes it: a chat model goes to llm.provider unless that is auto;
    embedders keep their own provider (the run's provider serves only chat)."""
    chats = "chat" in model.capabilities or not model.capabilities
    if llm_provider == "auto" or not chats:
        return model
    return model.model_copy(update={"provider": llm_provider})


async def models_report(config: OrchestratorConfig, catalog: ModelsCatalog) -> list[ModelStatus]:
    """Check every configured model against the provider a run would use for it (each provider
    is asked once)."""
    llm = config.llm
    entries = [(routed(m, llm.provider), roles) for m, roles in _configured(config, catalog)]
    checkable = (*CHAT_PROVIDERS, "replay") if llm.replay else CHAT_PROVIDERS
    needed = sorted({m.provider for m, _ in entries if m.provider in checkable})
    providers: dict[str, LLMProvider] = {}
    probes: dict[str, tuple[set[str] | None, str]] = {}
    try:
        for name in needed:
            missing = _missing_key(llm, name)
            if missing:  # nothing to ask without a key (and its SDK is slow to import)
                probes[name] = (None, missing)
                continue
            providers[name] = make_provider(
                name,
                host=llm.host,
                timeout_seconds=min(llm.timeout_seconds, CHECK_TIMEOUT_SECONDS),
                connect_timeout_seconds=llm.connect_timeout_seconds,
                replay_path=llm.replay,
                replay_strict=llm.replay_strict,
                llm=llm,
            )
        asked = list(providers)
        results = await asyncio.gather(*(_probe(providers[n]) for n in asked))
        probes.update(zip(asked, results, strict=True))
        rows = []
        for model, roles in entries:
            rows.append(await _status(model, roles, providers, probes))
        return rows
    finally:
        for provider in providers.values():
            await provider.aclose()


async def _status(
    model: ModelDef,
    roles: list[str],
    providers: dict[str, LLMProvider],
    probes: dict[str, tuple[set[str] | None, str]],
) -> ModelStatus:
    row = ModelStatus(
        name=model.name,
        provider=model.provider,
        tag=model.tag,
        roles=roles,
        reachable=None,
        present=None,
        context_length=model.context_window,
        input_per_mtok=model.prices.input_per_mtok,
        output_per_mtok=model.prices.output_per_mtok,
        cached_input_per_mtok=model.prices.cached_input_per_mtok,
        capabilities=list(model.capabilities),
    )
    if model.provider not in providers:  # in-process, or a cloud provider without a key
        skipped = probes.get(model.provider)
        row.note = (
            skipped[1]
            if skipped
            else "runs in-process"
            if model.provider == "onnx"
            else "not checked"
        )
        return row
    listed, why = probes[model.provider]
    if listed is None:
        row.reachable, row.note = False, why
        return row
    row.reachable = True
    row.present = _matches(model.tag, listed)
    if not row.present:
        if model.provider == "ollama":
            row.note = f"run: ollama pull {model.tag}"
        else:
            shown = ", ".join(sorted(listed)[:8]) + (" ..." if len(listed) > 8 else "")
            row.note = f"the server does not list this model; it lists: {shown or 'nothing'}"
    elif model.provider in ("ollama", "openai"):
        try:
            info = await providers[model.provider].model_info(model.tag)
            # The server's own context length wins, as it does for a run.
            row.context_length = info.context_length or row.context_length
            row.capabilities = list(info.capabilities) or row.capabilities
        except LLMError as error:
            row.note = str(error)
    return row
