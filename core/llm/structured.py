"""JSON answers from providers without native schema support: ask, validate, one repair round."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from core.errors import LLMError
from core.llm.base import ChatRequest, ChatResponse, token_limit_message
from core.llm.rounds import heard

Messages = list[dict[str, str]]
MAX_QUOTED = 1000


def schema_instruction(schema: dict[str, Any]) -> str:
    """The system text that asks for JSON matching a schema when the API cannot enforce it."""
    return (
        "Answer with a single JSON object and nothing else (no prose, no code fences). "
        "It must validate against this JSON schema:\n" + json.dumps(schema, indent=1)
    )


def with_instruction(messages: Messages, schema: dict[str, Any]) -> Messages:
    """The messages with the schema instruction appended to the system message (or added as one)."""
    instruction = schema_instruction(schema)
    out = [dict(m) for m in messages]
    for message in out:
        if message.get("role") == "system":
            message["content"] = f"{message['content']}\n\n{instruction}"
            return out
    return [{"role": "system", "content": instruction}, *out]


def extract_json(text: str) -> str:
    """The JSON object in an answer: code fences and text around the outermost braces dropped."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    start, end = stripped.find("{"), stripped.rfind("}")
    if start == -1 or end < start:
        return stripped.strip()
    return stripped[start : end + 1]


def schema_error(text: str, schema: dict[str, Any]) -> str | None:
    """Why the answer is not JSON matching the schema, or None when it is."""
    import jsonschema  # lazily: only structured calls need it

    try:
        value = json.loads(extract_json(text))
    except json.JSONDecodeError as error:
        return (
            f"the answer is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        )
    best = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(value)
    )
    if best is None:
        return None
    where = "/".join(str(part) for part in best.absolute_path) or "the top level"
    return f"at {where}: {best.message}"


def _quote(text: str) -> str:
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def _merged(first: ChatResponse, second: ChatResponse, content: str) -> ChatResponse:
    """One response for both rounds, so the ledger counts every token paid for."""
    return replace(
        second,
        content=content,
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        completion_tokens=first.completion_tokens + second.completion_tokens,
        cached_tokens=first.cached_tokens + second.cached_tokens,
        duration_ms=first.duration_ms + second.duration_ms,
    )


async def validated_json(
    request: ChatRequest,
    call: Callable[[Messages], Awaitable[ChatResponse]],
    *,
    first: ChatResponse | None = None,
    messages: Messages | None = None,
) -> ChatResponse:
    """Ask (unless `first` is the answer already), validate, and send a mismatch back once."""
    assert request.json_schema is not None
    schema = request.json_schema
    asked = messages if messages is not None else with_instruction(request.messages, schema)
    answer = first if first is not None else await call(asked)
    error = schema_error(answer.content, schema)
    if error is None:
        return replace(answer, content=extract_json(answer.content))
    heard(request, asked, answer, error)
    if answer.truncated:
        # A repair round would be cut off at the same limit: say which limit to raise.
        failed = LLMError(f"{token_limit_message(request, answer)} ({error}).")
        failed.spent = answer  # type: ignore[attr-defined]
        raise failed
    repair = [
        *asked,
        {"role": "assistant", "content": answer.content},
        {
            "role": "user",
            "content": f"Your answer does not match the JSON schema: {error}. "
            "Answer again with the complete corrected JSON object only.",
        },
    ]
    second = await call(repair)
    second_error = schema_error(second.content, schema)
    heard(request, repair, second, second_error)
    if second_error is not None:
        limit = f"{token_limit_message(request, second)}; " if second.truncated else ""
        failed = LLMError(
            f"{limit[:1].upper()}{limit[1:]}Model '{request.model}' did not answer with JSON "
            f"matching the schema after one repair round: {second_error}. "
            f"It answered: {_quote(second.content)}"
        )
        failed.spent = _merged(answer, second, second.content)  # type: ignore[attr-defined]
        raise failed
    return _merged(answer, second, extract_json(second.content))
