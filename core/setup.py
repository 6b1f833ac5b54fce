"""Builds a run's LLM client, executor and retriever from its stored configuration."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config.catalog import ModelDef, ModelsCatalog
from config.paths import Paths
from config.schema import OrchestratorConfig
from core.budget import BudgetGuard
from core.errors import ConfigError, ModelNotFoundError
from core.executors.base import Executor, executor_factory, register_executor
from core.executors.external import ExternalAgentExecutor
from core.executors.llm import LLMExecutor
from core.gate import Gate
from core.journal import Journal
from core.ledger import UsageLedger
from core.llm.base import LLMProvider
from core.llm.client import LLMClient, routed_name
from core.llm.config_check import AUTO
from core.llm.registry import make_provider
from core.llm.replay import CassetteRecorder
from core.llm.router import RoutingProvider
from core.retrieval import IndexedRetriever, NoRetrieval, Retriever
from core.state.store import StateStore

register_executor("llm", LLMExecutor.from_config)
register_executor("external", ExternalAgentExecutor.from_config)


def _acp_executor(*args: Any, **kwargs: Any) -> Executor:
    """The ACP executor, imported only when a run uses it (the ACP SDK's schema costs ~0.5 s)."""
    from core.executors.acp import AcpExecutor

    return AcpExecutor.from_config(*args, **kwargs)


register_executor("acp", _acp_executor)


def uses_executor_model(config: OrchestratorConfig) -> bool:
    """Whether the executor calls our executor model (agents bring their own model)."""
    return executor_name(config) not in ("acp", "external")


def executor_name(config: OrchestratorConfig) -> str:
    """The executor a run uses: naming an agent (execution.agent.name) alone selects `acp`."""
    execution = config.execution
    if execution.executor == "llm" and (execution.agent.name or execution.agent.command):
        return "acp"
    return execution.executor


@dataclass
class Clients:
    llm: LLMClient
    executor: Executor
    retriever: Retriever
    planner_model: ModelDef
    executor_model: ModelDef
    executions: dict[tuple[str, int], str]
    # Checked when an attempt ends for executors that bring their own model (acp, external).
    agent_budget: BudgetGuard | None = None


class StoreCache:
    """The LLM response cache kept in the state database."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    async def get(self, key: str) -> str | None:
        return await self._store.cache_get(key)

    async def put(self, key: str, value: str) -> None:
        await self._store.cache_put(key, value)


def _one_provider(config: OrchestratorConfig, name: str) -> LLMProvider:
    llm = config.llm
    return make_provider(
        name,
        host=llm.host,
        timeout_seconds=llm.timeout_seconds,
        connect_timeout_seconds=llm.connect_timeout_seconds,
        replay_path=llm.replay,
        replay_strict=llm.replay_strict,
        llm=llm,
    )


def provider_for(config: OrchestratorConfig, models: Sequence[ModelDef] = ()) -> LLMProvider:
    """The chat provider(s) for the given models: each model's own provider when llm.provider is
    auto, else the named one for all; wrapped in a recorder when llm.record is set."""
    llm = config.llm
    if llm.provider != AUTO:
        provider = _one_provider(config, llm.provider)
    else:
        names = {m.tag: m.provider for m in models} or {"": "ollama"}
        built = {name: _one_provider(config, name) for name in sorted(set(names.values()))}
        if len(built) == 1:
            provider = next(iter(built.values()))
        else:
            by_model = {tag: built[name] for tag, name in names.items()}
            provider = RoutingProvider(by_model, built.get("ollama") or next(iter(built.values())))
    if llm.record:
        return CassetteRecorder(llm.record, provider)
    return provider


def chat_models(config: OrchestratorConfig, catalog: ModelsCatalog) -> tuple[ModelDef, ModelDef]:
    """The planner's and the executor's model definitions."""
    return (
        catalog.resolve("planner", config.models.planner),
        catalog.resolve("executor", config.models.executor),
    )


def served_at(provider: LLMProvider, model: str) -> str:
    """ " at URL" of the server that serves `model` (through a recorder or a router), or ""."""
    inner: object = provider
    for _ in range(4):  # a recorder around a router around a provider, at most
        if hasattr(inner, "inner"):
            inner = inner.inner
        elif hasattr(inner, "route"):
            inner = inner.route(model)
        else:
            break
    url = getattr(inner, "host", None) or getattr(inner, "base_url", None)
    return f" at {url}" if url else ""


async def checked_model(provider: LLMProvider, model: ModelDef) -> ModelDef:
    """Ask the provider whether the model exists and fill in its context length when unknown."""
    if provider.name == "replay":
        return model
    tag = model.model or model.name
    served_by = routed_name(provider, tag)
    if served_by == "replay":
        return model
    info = await provider.model_info(tag)
    if not info.present:
        if served_by == "ollama":
            hint = f"run: ollama pull {tag}"
        else:
            hint = "check the model name (`orchestrator models` lists what is configured and found)"
        raise ModelNotFoundError(
            f"model {tag!r} is not present on the {served_by} server{served_at(provider, tag)}; "
            f"{hint}"
        )
    if info.capabilities and served_by == "ollama" and "completion" not in info.capabilities:
        raise ConfigError(
            f"model {tag!r} on Ollama cannot chat (its capabilities: "
            f"{', '.join(info.capabilities)}); pick a chat model for the planner and executor "
            "in models.yaml or with --model"
        )
    if info.context_length and (
        model.context_window is None or info.context_length < model.context_window
    ):
        # The server's own context length wins over a larger figure in models.yaml.
        return model.model_copy(update={"context_window": info.context_length})
    return model


async def preflight(config: OrchestratorConfig, catalog: ModelsCatalog) -> None:
    """Fail before a run is stored when its provider is unknown or unreachable or a model is missing."""
    planner, executor = chat_models(config, catalog)
    chat = [planner, executor] if uses_executor_model(config) else [planner]
    provider = provider_for(config, chat)
    try:
        for model in chat:
            await checked_model(provider, model)
    finally:
        await provider.aclose()


async def build_clients(
    config: OrchestratorConfig,
    catalog: ModelsCatalog,
    store: StateStore,
    run_id: str,
    paths: Paths,
    *,
    gate: Gate | None = None,
    journal: Journal | None = None,
) -> Clients:
    planner, executor = chat_models(config, catalog)
    own_model = uses_executor_model(config)
    provider = provider_for(config, [planner, executor] if own_model else [planner])
    planner_model = await checked_model(provider, planner)
    executor_model = await checked_model(provider, executor) if own_model else executor

    executions: dict[tuple[str, int], str] = {}  # filled by the phase runner as attempts start
    ledger = UsageLedger(store, run_id, [planner_model, executor_model], executions, journal)
    budget = BudgetGuard(store, run_id, config.execution, ledger.phase_id, gate)

    # Replay is already a cache, and a recording must hold every answer, so neither uses it.
    use_cache = config.llm.cache and provider.name != "replay" and not config.llm.record
    llm = LLMClient(
        provider,
        max_retries=config.llm.max_retries,
        backoff_seconds=config.llm.retry_backoff_seconds,
        max_backoff_seconds=config.llm.retry_max_wait_seconds,
        max_concurrent=config.llm.max_concurrent_calls,
        concurrency=config.llm.concurrency,
        cache=StoreCache(store) if use_cache else None,
        on_usage=ledger.record,
        before_call=budget.check,
    )
    executor_impl = executor_factory(executor_name(config))(config, llm, executor_model)
    retriever: Retriever = NoRetrieval()
    if config.rag.enabled:
        # numpy, tree-sitter: only when used, and imported in a thread (a second of CPU that would
        # stall the event loop, the heartbeat of every run this process drives included)
        await asyncio.to_thread(importlib.import_module, "core.indexing")
        from core.indexing import hybrid_retriever

        retriever = IndexedRetriever(hybrid_retriever(paths, config, catalog))
    return Clients(
        llm,
        executor_impl,
        retriever,
        planner_model,
        executor_model,
        executions,
        agent_budget=None if own_model else budget,
    )
