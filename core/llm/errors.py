"""One classification of model-call failures for every provider: retriable or not, and what to do.

Retriable (LLMRetriableError, retried by the client with backoff): connection refused or broken,
timeouts, HTTP 408/409/425/429 (honouring Retry-After), 5xx and Anthropic's 529 "overloaded".
Not retriable: 401/403 (LLMAuthError), 404 (ModelNotFoundError), 413 (PromptTooLargeError) and
every other 4xx (LLMError, an invalid request). Messages never contain the API key.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

import httpx

from core.errors import (
    LLMAuthError,
    LLMError,
    LLMRetriableError,
    ModelNotFoundError,
    PromptTooLargeError,
)

RETRIABLE_STATUSES = frozenset({408, 409, 425, 429, 529})
MAX_MESSAGE_CHARS = 500


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # neither seconds nor an HTTP date: ignore it, back off as usual
    return max(0.0, parsed.timestamp() - time.time())


@dataclass(frozen=True)
class Endpoint:
    """Who was called, for messages: "OpenAI-compatible server at URL", key variable, how to fix."""

    label: str  # "Ollama", "OpenAI-compatible server", "Anthropic"
    url: str
    key_env: str | None = None  # the variable the key comes from, named when it is refused
    missing_model_hint: str = "check the model name with `orchestrator models`"
    unreachable_hint: str = "check the URL and that the server is running"
    scrub: Callable[[str], str] = lambda text: text  # removes the API key from server text

    def where(self) -> str:
        return f"{self.label} at {self.url}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def from_status(
    endpoint: Endpoint,
    status: int,
    message: str,
    model: str,
    headers: Mapping[str, str] | None = None,
) -> LLMError:
    """The error for an HTTP status answered by a provider."""
    detail = _short(endpoint.scrub(message))
    where = endpoint.where()
    if status in (401, 403):
        key = f" in {endpoint.key_env}" if endpoint.key_env else ""
        return LLMAuthError(
            f"{where} refused the API key{key} (HTTP {status}): {detail}. "
            f"Set a valid key{key} (or in the secrets file llm.secrets_file points to)."
        )
    if status == 404 and not model:
        return LLMError(
            f"{where} answered HTTP 404 ({detail}) where its API should be: the URL is wrong or "
            f"the server is another kind; {endpoint.unreachable_hint}"
        )
    if status == 404:
        return ModelNotFoundError(
            f"Model '{model}' is not available on {where} ({detail}); "
            + endpoint.missing_model_hint.format(model=model)
        )
    if status == 413:
        return PromptTooLargeError(
            f"{where} refused the request for model '{model}' as too large (HTTP 413): {detail}. "
            "Shorten the task or the retrieved context."
        )
    if status in RETRIABLE_STATUSES or status >= 500 or status == -1:
        retry_after = parse_retry_after(headers)
        wait = f"; it asked to wait {retry_after:g}s" if retry_after is not None else ""
        what = "is rate limiting" if status == 429 else "failed"
        code = f"HTTP {status}" if status > 0 else "an error inside the stream"
        return LLMRetriableError(
            f"{where} {what} ({code}): {detail}{wait}", retry_after=retry_after
        )
    return LLMError(
        f"{where} rejected the request for model '{model}' (HTTP {status}): {detail}. "
        "This is not retried; check the model's settings in models.yaml."
    )


def from_timeout(endpoint: Endpoint, timeout_seconds: float, connect: bool) -> LLMRetriableError:
    """The error for a call that did not connect or answer in time."""
    phase = "connect" if connect else "answer"
    return LLMRetriableError(
        f"{endpoint.where()} did not {phase} within the timeout "
        f"({timeout_seconds:g}s for answers, llm.timeout_seconds). "
        f"Check that the server is running and not overloaded; {endpoint.unreachable_hint}."
    )


def from_connection(endpoint: Endpoint, error: BaseException) -> LLMRetriableError:
    """The error for a refused or broken connection."""
    detail = _short(endpoint.scrub(str(error) or type(error).__name__))
    hint = endpoint.unreachable_hint
    return LLMRetriableError(
        f"Cannot reach {endpoint.where()}: {detail}. {hint[:1].upper()}{hint[1:]}."
    )


def _transport_error(error: BaseException) -> bool:
    """An httpx transport error, or the same class of the httpx copy an SDK vendors."""
    if isinstance(error, httpx.TransportError):
        return True
    return any(cls.__name__ == "TransportError" for cls in type(error).__mro__)


def from_broken_stream(endpoint: Endpoint, error: BaseException) -> LLMRetriableError:
    """The error for a connection that broke while the answer was streaming."""
    detail = _short(endpoint.scrub(str(error) or type(error).__name__))
    return LLMRetriableError(
        f"The connection to {endpoint.where()} broke while the answer was streaming "
        f"({type(error).__name__}: {detail}). Check that the server is still running."
    )


def from_sdk_error(
    sdk: ModuleType, error: BaseException, endpoint: Endpoint, model: str, timeout: float
) -> LLMError | None:
    """Map an `openai` or `anthropic` SDK exception (same class names in both); None if foreign."""
    if isinstance(error, sdk.APITimeoutError):
        return from_timeout(endpoint, timeout, connect=False)
    if isinstance(error, sdk.APIConnectionError):
        cause = error.__cause__ or error
        return from_connection(endpoint, cause)
    if isinstance(error, sdk.APIStatusError):
        headers = dict(error.response.headers.items()) if error.response is not None else {}
        message = _sdk_message(error)
        status = int(error.status_code)
        # An error event inside a stream arrives after a 200: the server broke off mid-answer.
        return from_status(endpoint, status if status >= 400 else -1, message, model, headers)
    if _transport_error(error):
        # Raised while reading a stream (the SDKs wrap only errors before the answer starts).
        return from_broken_stream(endpoint, error)
    if isinstance(error, sdk.APIError):
        return LLMRetriableError(
            f"{endpoint.where()} sent an answer that could not be read: "
            f"{_short(endpoint.scrub(str(error)))}"
        )
    return None


def _sdk_message(error: BaseException) -> str:
    """The server's own error text from an SDK status error's body, else the exception text."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            kind = inner.get("type")
            return f"{kind}: {inner['message']}" if kind else str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(error, "message", None) or error)
