"""The token and cost ledger: every model call is recorded against its run, phase and attempt."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from config.catalog import ModelDef, ModelPrices
from core.events import UsageRecorded
from core.journal import Journal
from core.llm.base import (
    ChatRequest,
    ChatResponse,
    estimate_prompt_tokens,
    token_limit_message,
)
from core.state.store import StateStore

log = logging.getLogger(__name__)

# A server that counts under a quarter of the estimated prompt (3 against ~770) did not read it:
# usually a broken chat template. Small prompts are too rough to judge.
PROMPT_SHORTFALL_RATIO = 4
PROMPT_SHORTFALL_MIN_ESTIMATE = 100


def prompt_shortfall(request: ChatRequest, response: ChatResponse) -> str | None:
    """A warning when the server-reported prompt size is far below the estimate, else None."""
    if response.cached or response.raw.get("partial") or not response.prompt_tokens:
        return None
    if response.raw.get("usage_reported") is False:
        return None  # the figure is our own estimate, not the server's
    estimate = estimate_prompt_tokens(replace(request, json_schema=None))
    if estimate < PROMPT_SHORTFALL_MIN_ESTIMATE:
        return None
    if response.prompt_tokens * PROMPT_SHORTFALL_RATIO >= estimate:
        return None
    return (
        f"model {request.model}: the server counted {response.prompt_tokens} prompt tokens "
        f"where about {estimate} were sent; its chat template is probably broken (a base model "
        "without one, or a wrong --chat-template), so the model does not see the prompt. "
        "Serve an instruction-tuned model or fix the server's chat template."
    )


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
        self._warned: set[tuple[str, str]] = set()  # (kind, model): each warning once per run

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
        self._warn(request, response, phase_id)
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

    def _warn(self, request: ChatRequest, response: ChatResponse, phase_id: str | None) -> None:
        """Log and store what the usage figures reveal: a broken chat template, a cut-off answer."""
        warnings = [
            ("prompt", prompt_shortfall(request, response)),
            ("limit", token_limit_message(request, response) if response.truncated else None),
        ]
        for kind, text in warnings:
            if text is None or (kind, request.model) in self._warned:
                continue
            self._warned.add((kind, request.model))
            if self._journal is not None:  # stored, and mirrored to the log file as a warning
                self._journal.log(self._run_id, phase_id, "warning", text)
            else:
                log.warning("run %s: %s", self._run_id, text)
