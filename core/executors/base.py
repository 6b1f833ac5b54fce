"""The executor protocol: one attempt at one phase inside its worktree, plus the plugin registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

# log(message, level) appends a line to the run's live log; safe to call from any coroutine.
LogFn = Callable[[str, str], None]


class AttemptHost(Protocol):
    """What an agent executor may ask of the engine during one attempt (built by the phase runner)."""

    repo: Path  # the user's repository, which an agent must not change
    home: Path  # the orchestrator's home folder

    async def ask_permission(
        self, key: str, reason: str, action_required: str, payload: dict[str, Any]
    ) -> bool:
        """A durable `agent_permission` decision: True when approved (waits for a person)."""
        ...

    async def record_usage(
        self,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cost_usd: float = 0.0,
        duration_ms: float = 0.0,
    ) -> None:
        """Add what the agent reported it used to the run's ledger."""
        ...

    async def report_finding(self, message: str, details: str) -> None:
        """Record a major finding against the attempt (e.g. a change outside the worktree)."""
        ...


@dataclass(frozen=True)
class PhaseJob:
    """Everything an executor needs for one attempt."""

    run_id: str
    task: str
    phase_plan_id: str
    phase_name: str
    phase_description: str
    verification_criteria: list[str]
    attempt: int
    worktree: Path
    context: str = ""  # retrieved context, already formatted for a prompt
    relevant_files: list[str] = field(default_factory=list)
    previous_failure: str | None = None  # why the last attempt failed, for the next prompt
    findings_feedback: list[str] = field(default_factory=list)  # open findings, most severe first
    lessons: str = ""  # the Lessons section from earlier runs on the repository (core/lessons.py)
    host: AttemptHost | None = None  # the engine's services for agent executors; None in unit tests


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    summary: str  # what the executor did, for the execution row's output
    error: str | None = None  # why it failed; sent back on the next attempt
    changed_files: list[str] = field(default_factory=list)
    retriable: bool = True  # False for configuration/authentication errors


class Executor(Protocol):
    name: str

    async def execute(self, job: PhaseJob, log: LogFn) -> AttemptResult: ...


# name -> factory(config, llm_client) -> Executor; entry points in group "orchestrator.executors" extend it.
ExecutorFactory = Callable[..., Executor]
_REGISTRY: dict[str, ExecutorFactory] = {}


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Register an executor factory under a name usable as `executor.kind` in config."""
    _REGISTRY[name] = factory


def executor_factory(name: str) -> ExecutorFactory:
    """The factory registered (or published as an entry point) under `name`."""
    if name not in _REGISTRY:
        for ep in entry_points(group="orchestrator.executors"):
            if ep.name == name:
                _REGISTRY[name] = ep.load()
                break
    if name not in _REGISTRY:
        from core.errors import ConfigError

        known = ", ".join(
            sorted(set(_REGISTRY) | {e.name for e in entry_points(group="orchestrator.executors")})
        )
        raise ConfigError(f"executor.kind: unknown executor {name!r}; known executors: {known}")
    return _REGISTRY[name]


def executor_names() -> list[str]:
    return sorted(set(_REGISTRY) | {e.name for e in entry_points(group="orchestrator.executors")})
