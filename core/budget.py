"""Cost and token budgets per run and per phase: reaching one pauses the run with a `budget`
intervention; approving it with a higher limit continues, rejecting it stops the run.

Limits come from `execution.max_cost_usd`, `max_tokens`, `max_phase_cost_usd` and
`max_phase_tokens`; a limit raised by `approve ID --budget-usd N` is kept in the run's metadata
under "budget" (scope "run" or a phase's plan id), so a resumed run keeps it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from config.schema import ExecutionConfig
from core.errors import BudgetStopped, InputError
from core.gate import Gate
from core.llm.base import ChatRequest
from core.records import Intervention, InterventionKind, InterventionStatus, UsageTotals
from core.state.store import StateStore

RUN_SCOPE = "run"
METRICS = ("cost_usd", "tokens")


@dataclass(frozen=True)
class Limits:
    cost_usd: float | None = None
    tokens: int | None = None

    def get(self, metric: str) -> float | None:
        return self.cost_usd if metric == "cost_usd" else self.tokens


def configured_limits(execution: ExecutionConfig, scope: str) -> Limits:
    """The configured limits of a scope ("run" or a phase's plan id)."""
    if scope == RUN_SCOPE:
        return Limits(execution.max_cost_usd, execution.max_tokens)
    return Limits(execution.max_phase_cost_usd, execution.max_phase_tokens)


def effective_limits(execution: ExecutionConfig, metadata: dict[str, Any], scope: str) -> Limits:
    """Configured limits with the ones a person raised (run metadata "budget") on top."""
    base = configured_limits(execution, scope)
    raised = (metadata.get("budget") or {}).get(scope) or {}
    return Limits(
        cost_usd=raised.get("cost_usd", base.cost_usd),
        tokens=raised.get("tokens", base.tokens),
    )


def spent_of(totals: UsageTotals, metric: str) -> float:
    return totals.cost_usd if metric == "cost_usd" else float(totals.total_tokens)


def describe(metric: str, value: float) -> str:
    return f"${value:.4f}" if metric == "cost_usd" else f"{int(value)} tokens"


class BudgetGuard:
    """Checked before every model call, and when an agent executor's attempt ends (its usage is
    recorded then, and no model call of ours follows): pauses through the gate while a budget is
    reached."""

    def __init__(
        self,
        store: StateStore,
        run_id: str,
        execution: ExecutionConfig,
        phase_id_of: Callable[[str], Awaitable[str | None]],
        gate: Gate | None = None,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._execution = execution
        self._phase_id_of = phase_id_of
        self.gate = gate
        # Parallel phases reaching the run's budget together share one intervention and wait.
        self._run_lock = asyncio.Lock()

    def _any_limit(self, metadata: dict[str, Any]) -> bool:
        ex = self._execution
        configured = (ex.max_cost_usd, ex.max_tokens, ex.max_phase_cost_usd, ex.max_phase_tokens)
        return any(v is not None for v in configured) or bool(metadata.get("budget"))

    async def check(self, request: ChatRequest) -> None:
        """Before a model call: return when the run (and the request's phase) are within budget;
        else ask and wait."""
        await self.check_phase(request.phase)

    async def check_phase(self, plan_id: str | None) -> None:
        """Return when the run (and the phase `plan_id`, if given) are within budget; else ask
        and wait (a rejection raises BudgetStopped). Also called when an agent's attempt ends."""
        if self.gate is None:
            return
        run = await self._store.get_run(self._run_id)
        if not self._any_limit(run.metadata):
            return
        async with self._run_lock:
            await self._check_scope(RUN_SCOPE, None)
        if plan_id is not None:
            phase_id = await self._phase_id_of(plan_id)
            if phase_id is not None:
                await self._check_scope(plan_id, phase_id)

    async def _check_scope(self, scope: str, phase_id: str | None) -> None:
        assert self.gate is not None
        answered: set[str] = set()
        while True:
            run = await self._store.get_run(self._run_id)
            limits = effective_limits(self._execution, run.metadata, scope)
            spent = await self._store.usage_spent(self._run_id, phase_id)
            breach = next(
                (
                    (metric, float(limit))
                    for metric in METRICS
                    if (limit := limits.get(metric)) is not None
                    and spent_of(spent, metric) >= limit
                ),
                None,
            )
            if breach is None:
                return
            metric, limit = breach
            key = f"budget:{scope}:{metric}:{limit:g}"
            if key in answered:
                return  # approved without raising this limit: continue past it
            answer = await self.gate.decide(
                InterventionKind.BUDGET,
                phase_id=phase_id,
                key=key,
                reason=_reason(scope, metric, spent_of(spent, metric), limit),
                action_required=(
                    "raise the budget or stop: approve with --budget-usd N (or --budget-tokens N) "
                    "to raise the limit and continue; reject stops the run"
                ),
                payload={"scope": scope, "metric": metric, "limit": limit},
            )
            if answer.status is InterventionStatus.REJECTED:
                raise BudgetStopped(
                    f"stopped at the {_scope_name(scope)} budget: "
                    f"{describe(metric, spent_of(spent, metric))} spent of "
                    f"{describe(metric, limit)} (intervention {answer.id} rejected)"
                )
            answered.add(key)


def _scope_name(scope: str) -> str:
    return "run's" if scope == RUN_SCOPE else f"phase {scope}'s"


def _reason(scope: str, metric: str, spent: float, limit: float) -> str:
    setting = {
        (True, "cost_usd"): "execution.max_cost_usd",
        (True, "tokens"): "execution.max_tokens",
        (False, "cost_usd"): "execution.max_phase_cost_usd",
        (False, "tokens"): "execution.max_phase_tokens",
    }[(scope == RUN_SCOPE, metric)]
    who = "the run" if scope == RUN_SCOPE else f"phase {scope}"
    return (
        f"{who} reached its budget: {describe(metric, spent)} spent of {describe(metric, limit)} "
        f"({setting}); raise the budget or stop"
    )


async def raise_budget(
    store: StateStore,
    item: Intervention,
    budget_usd: float | None,
    budget_tokens: int | None,
) -> str:
    """Store a raised limit for a pending budget intervention; returns a note for the decision."""
    scope = str(item.payload.get("scope") or RUN_SCOPE)
    metric = str(item.payload.get("metric") or "cost_usd")
    wanted = {"cost_usd": budget_usd, "tokens": budget_tokens}
    flag = {"cost_usd": "--budget-usd", "tokens": "--budget-tokens"}
    if wanted[metric] is None:
        raise InputError(
            f"intervention {item.id} stopped the run at its {metric.replace('_usd', '')} budget; "
            f"approve it with {flag[metric]} N (a limit above what was spent), or reject it "
            "to stop the run"
        )
    spent = await spent_for(store, item)
    for name, value in wanted.items():
        if value is None:
            continue
        if value <= 0 or value <= spent_of(spent, name):
            raise InputError(
                f"{flag[name]} {value:g} is not above what was spent "
                f"({describe(name, spent_of(spent, name))}); give a higher limit"
            )
    run = await store.get_run(item.run_id)
    budgets = dict(run.metadata.get("budget") or {})
    scoped = dict(budgets.get(scope) or {})
    scoped.update({k: v for k, v in wanted.items() if v is not None})
    budgets[scope] = scoped
    await store.set_run_metadata(item.run_id, budget=budgets)
    parts = [describe(k, float(v)) for k, v in wanted.items() if v is not None]
    return f"budget raised to {' and '.join(parts)}"


# The raised limits offered where a person picks one (an editor's permission options): option id,
# its label, and the factor applied to the higher of the breached limit and what was spent.
RAISES = (("raise-half", "+50%", 1.5), ("raise-double", "×2", 2.0))


@dataclass(frozen=True)
class RaiseOffer:
    """One raised limit a person may pick for a budget intervention."""

    option_id: str
    label: str  # e.g. "+50%"
    metric: str  # "cost_usd" or "tokens"
    value: float

    def describe(self) -> str:
        return describe(self.metric, self.value)

    def approve_args(self) -> dict[str, Any]:
        """The keyword arguments of Engine.resolve_intervention that apply this limit."""
        if self.metric == "cost_usd":
            return {"budget_usd": self.value}
        return {"budget_tokens": int(self.value)}


def raise_offers(item: Intervention, spent: UsageTotals) -> list[RaiseOffer]:
    """A +50% and a doubled limit for a budget intervention, from the higher of its limit and
    what was spent, rounded up (to $0.0001 or a token) so each stays above the spend."""
    metric = str(item.payload.get("metric") or "cost_usd")
    base = max(float(item.payload.get("limit") or 0), spent_of(spent, metric))
    if base <= 0:  # a zero limit with nothing spent yet: offer from one unit up
        base = 1.0 if metric == "cost_usd" else 1000.0
    step = 10_000 if metric == "cost_usd" else 1
    return [
        # round() first: float noise (0.07 * 2 * 10000 = 1400.0000000000002) must not round up
        RaiseOffer(option_id, label, metric, math.ceil(round(base * factor * step, 6)) / step)
        for option_id, label, factor in RAISES
    ]


async def spent_for(store: StateStore, item: Intervention) -> UsageTotals:
    """What the run (or the intervention's phase, for a phase's budget) has spent so far."""
    scope = str(item.payload.get("scope") or RUN_SCOPE)
    return await store.usage_spent(item.run_id, item.phase_id if scope != RUN_SCOPE else None)
