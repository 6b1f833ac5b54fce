"""Builds a run's LLM client, executor and retriever from its stored configuration."""

from __future__ import annotations

from dataclasses import dataclass

from config.catalog import ModelDef, ModelsCatalog
from config.paths import Paths
from config.schema import OrchestratorConfig
from core.errors import ModelNotFoundError
from core.executors.base import Executor, executor_factory, register_executor
from core.executors.external import ExternalAgentExecutor
from core.executors.llm import LLMExecutor
from core.llm.base import ChatRequest, ChatResponse, LLMProvider
from core.llm.client import LLMClient
from core.llm.registry import make_provider
from core.retrieval import IndexedRetriever, NoRetrieval, Retriever
from core.state.store import StateStore

register_executor("llm", LLMExecutor.from_config)
register_executor("external", ExternalAgentExecutor.from_config)


@dataclass
class Clients:
    llm: LLMClient
    executor: Executor
    retriever: Retriever
    planner_model: ModelDef
    executor_model: ModelDef
    executions: dict[tuple[str, int], str]


class StoreCache:
    """The LLM response cache kept in the state database."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    async def get(self, key: str) -> str | None:
        return await self._store.cache_get(key)

    async def put(self, key: str, value: str) -> None:
        await self._store.cache_put(key, value)


def provider_for(config: OrchestratorConfig) -> LLMProvider:
    """The chat provider the configuration names (wrapped in a recorder when llm.record is set)."""
    llm = config.llm
    return make_provider(
        llm.provider,
        host=llm.host,
        timeout_seconds=llm.timeout_seconds,
        connect_timeout_seconds=llm.connect_timeout_seconds,
        replay_path=llm.replay,
        replay_strict=llm.replay_strict,
        record_path=llm.record,
    )


async def checked_model(provider: LLMProvider, model: ModelDef) -> ModelDef:
    """Ask the provider whether the model exists and fill in its context length when unknown."""
    if provider.name == "replay":
        return model
    info = await provider.model_info(model.model or model.name)
    if not info.present:
        tag = model.model or model.name
        raise ModelNotFoundError(
            f"model {tag!r} is not present on the {provider.name} server; run: ollama pull {tag}"
        )
    if model.context_window is None and info.context_length:
        return model.model_copy(update={"context_window": info.context_length})
    return model


async def preflight(config: OrchestratorConfig, catalog: ModelsCatalog) -> None:
    """Fail before a run is stored when its provider is unknown or unreachable or a model is missing."""
    provider = provider_for(config)
    try:
        await checked_model(provider, catalog.resolve("planner", config.models.planner))
        await checked_model(provider, catalog.resolve("executor", config.models.executor))
    finally:
        await provider.aclose()


async def build_clients(
    config: OrchestratorConfig, catalog: ModelsCatalog, store: StateStore, run_id: str, paths: Paths
) -> Clients:
    provider = provider_for(config)
    planner_model = await checked_model(provider, catalog.resolve("planner", config.models.planner))
    executor_model = await checked_model(
        provider, catalog.resolve("executor", config.models.executor)
    )

    phase_ids: dict[str, str] = {}  # plan id -> phase id; fixed once the plan is stored
    executions: dict[tuple[str, int], str] = {}  # filled by the phase runner as attempts start

    async def on_usage(request: ChatRequest, response: ChatResponse) -> None:
        phase_id = execution_id = None
        if request.phase is not None:
            if request.phase not in phase_ids:
                phase_ids.update({p.plan_id: p.id for p in await store.get_phases_for_run(run_id)})
            phase_id = phase_ids.get(request.phase)
            if request.attempt is not None:
                execution_id = executions.get((request.phase, request.attempt))
        await store.record_usage(
            run_id,
            phase_id,
            execution_id,
            request.role,
            response.provider,
            response.model,
            response.prompt_tokens,
            response.completion_tokens,
            response.duration_ms,
            response.cached,
        )

    # Replay is already a cache, and a recording must hold every answer, so neither uses it.
    use_cache = config.llm.cache and provider.name != "replay" and not config.llm.record
    llm = LLMClient(
        provider,
        max_retries=config.llm.max_retries,
        backoff_seconds=config.llm.retry_backoff_seconds,
        max_concurrent=config.llm.max_concurrent_calls,
        cache=StoreCache(store) if use_cache else None,
        on_usage=on_usage,
    )
    executor = executor_factory(config.execution.executor)(config, llm, executor_model)
    retriever: Retriever = NoRetrieval()
    if config.rag.enabled:
        from core.indexing import hybrid_retriever  # numpy, tree-sitter: only when used

        retriever = IndexedRetriever(hybrid_retriever(paths, config, catalog))
    return Clients(llm, executor, retriever, planner_model, executor_model, executions)
