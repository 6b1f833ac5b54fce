"""The token and cost ledger: every model call is recorded against its run, phase and attempt."""

from __future__ import annotations

from collections.abc import Iterable

from config.catalog import ModelDef, ModelPrices
from core.events import UsageRecorded
from core.journal import Journal
from core.llm.base import ChatRequest, ChatResponse
from core.state.store import StateStore


def call_cost(prices: ModelPrices | None, response: ChatResponse) -> float:
    """USD cost of one call from per-million-token prices; answers from our cache cost nothing."""
    if prices is None or response.cached:
        return 0.0
    cached = min(response.cached_tokens, response.prompt_tokens)
    cached_price = (
        prices.cached_input_per_mtok
        if prices.cached_input_per_mtok is not None
        else prices.input_per_mtok
    )
    return (
        (response.prompt_tokens - cached) * prices.input_per_mtok
        + cached * cached_price
        + response.completion_tokens * prices.output_per_mtok
    ) / 1_000_000


class UsageLedger:
    """The LLMClient's usage hook: maps plan ids to phase ids, prices the call, stores it."""

    def __init__(
        self,
        store: StateStore,
        run_id: str,
        models: Iterable[ModelDef],
        executions: dict[tuple[str, int], str],
        journal: Journal | None = None,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._prices = {m.tag: m.prices for m in models}
        self._executions = executions  # (plan id, attempt) -> execution id, filled by attempts
        self._phase_ids: dict[str, str] = {}  # plan id -> phase id, fixed once the plan is stored
        self._journal = journal

    async def phase_id(self, plan_id: str) -> str | None:
        """The stored phase id of a plan id (None before the plan is saved)."""
        if plan_id not in self._phase_ids:
            phases = await self._store.get_phases_for_run(self._run_id)
            self._phase_ids.update({p.plan_id: p.id for p in phases})
        return self._phase_ids.get(plan_id)

    async def record(self, request: ChatRequest, response: ChatResponse) -> None:
        """Store one call with its tokens, duration and cost, then announce it."""
        phase_id = execution_id = None
        if request.phase is not None:
            phase_id = await self.phase_id(request.phase)
            if request.attempt is not None:
                execution_id = self._executions.get((request.phase, request.attempt))
        cost = call_cost(self._prices.get(request.model), response)
        await self._store.record_usage(
            self._run_id,
            phase_id,
            execution_id,
            request.role,
            response.provider,
            response.model,
            response.prompt_tokens,
            response.completion_tokens,
            response.duration_ms,
            response.cached,
            attempt=request.attempt,
            cached_tokens=response.cached_tokens,
            cost_usd=cost,
        )
        if self._journal is not None:
            await self._journal.emit(
                UsageRecorded(
                    run_id=self._run_id,
                    role=request.role,
                    prompt_tokens=response.prompt_tokens,
                    completion_tokens=response.completion_tokens,
                    phase_id=phase_id,
                    provider=response.provider,
                    model=response.model,
                    cost_usd=cost,
                )
            )
