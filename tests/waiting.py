"""The one way tests wait: poll a condition until a deadline, then fail naming what was awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from core.engine import Engine

T = TypeVar("T")

# Generous on purpose: the suite must pass on two cores that other work keeps busy.
DEFAULT_TIMEOUT = 60.0
_STEP = 0.02


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    step: float = _STEP,
    pause: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """Await until `check()` (sync or async) returns a truthy value and return it; fail naming `what`.

    `pause` lets time pass between checks (default: sleep `step`); Pilot tests pass
    `lambda: pilot.pause(step)` so the app also runs its timers in between.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await (pause() if pause is not None else asyncio.sleep(step))


def wait_until(
    check: Callable[[], T], *, what: str, timeout: float = DEFAULT_TIMEOUT, step: float = _STEP
) -> T:
    """Block until `check()` returns a truthy value and return it; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
    return value


async def pending_asks(
    engine: Engine, run_id: str, driving: asyncio.Task[Any] | None = None
) -> list[Any]:
    """Wait for the run's pending interventions; fail at once with the run's error if it ended first."""

    async def check() -> list[Any]:
        if driving is not None and driving.done():
            run = await engine.get_run(run_id)
            raise AssertionError(
                f"run {run_id} ended ({run.status.value}) before asking: {run.error}"
            )
        return list(await engine.interventions(run_id, pending_only=True))

    return await eventually(check, what=f"a pending intervention in run {run_id}")
