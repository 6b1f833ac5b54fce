"""A listener for the rounds inside one chat call (an answer and its schema repair), so a
recorder writes each answer as it arrives, not only the call's final result or failure."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from core.llm.base import ChatRequest, ChatResponse

# Called with the call's request, the messages really sent, the answer, and why it was refused.
RoundListener = Callable[[ChatRequest, list[dict[str, str]], ChatResponse, str | None], None]

_LISTENER: ContextVar[RoundListener | None] = ContextVar("round_listener", default=None)


@contextlib.contextmanager
def listening(listener: RoundListener) -> Iterator[None]:
    """Hear every round of the chat calls made inside this block (in this task)."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def heard(
    request: ChatRequest,
    messages: list[dict[str, str]],
    response: ChatResponse,
    problem: str | None,
) -> None:
    """Tell the listener (if any) about one round's answer and what was wrong with it."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(request, messages, response, problem)
