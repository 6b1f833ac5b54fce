"""A real HTTP server on 127.0.0.1 speaking OpenAI's chat completions API (JSON and SSE streams)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.scripted import ScriptedHandler, ScriptedServer, split


class FakeOpenAI(ScriptedServer):
    """Fake OpenAI-compatible server; script it with `answers` (see ScriptedServer).

    `supports_json_schema = False` makes it refuse response_format json_schema with HTTP 400,
    as many compatible servers do. A scripted {"status": 401, "echo_key": True} puts the key it
    received into its error message, as some servers do, to prove the client scrubs it.
    """

    def __init__(self, models: list[str] | None = None, api_key: str | None = None) -> None:
        self.handler = _Handler
        super().__init__(models, api_key)
        self.supports_json_schema = True
        self.supports_stream_options = True  # False: HTTP 400 for stream_options, as old servers
        # Context lengths published in /v1/models as llama.cpp does (`meta.n_ctx`), per model.
        self.contexts: dict[str, int] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chats(self) -> list[dict[str, Any]]:
        return self.calls("/chat/completions")


def _error(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _usage(answer: dict[str, Any], body: dict[str, Any], content: str) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    prompt = int(answer.get("prompt_tokens", max(1, prompt_chars // 4)))
    completion = int(answer.get("completion_tokens", max(1, len(content) // 4)))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(answer.get("cached_tokens", 0))},
    }


class _Handler(ScriptedHandler):
    def _key(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def _authorised(self) -> bool:
        if self.fake.api_key is None or self._key() == self.fake.api_key:
            return True
        self.send_json(401, _error("Incorrect API key provided.", code="invalid_api_key"))
        return False

    def do_GET(self) -> None:
        self.read_body()
        try:
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/models":
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in self.fake.models
                ]
                for entry in data:
                    if entry["id"] in self.fake.contexts:
                        entry["meta"] = {"n_ctx": self.fake.contexts[entry["id"]]}
                self.send_json(200, {"object": "list", "data": data})
            else:
                self.send_json(404, _error(f"unknown path {self.path}"))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        body = self.read_body()
        try:
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/chat/completions":
                with self.fake.track():
                    self._chat(body)
            else:
                self.send_json(404, _error(f"unknown path {self.path}"))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _chat(self, body: dict[str, Any]) -> None:
        fake: FakeOpenAI = self.fake
        model = str(body.get("model", ""))
        if model not in fake.models:
            self.send_json(
                404, _error(f"The model `{model}` does not exist.", code="model_not_found")
            )
            return
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and not fake.supports_json_schema:
            self.send_json(400, _error("response_format json_schema is not supported"))
            return
        if "stream_options" in body and not fake.supports_stream_options:
            self.send_json(400, _error("Unrecognized request argument: stream_options"))
            return
        answer = fake.next_answer(body)
        if "stall" in answer:
            fake.stall(float(answer["stall"]))
        if "status" in answer:
            message = str(answer.get("error", "fake error"))
            if answer.get("echo_key"):
                message += f" You sent: {self._key()}"
            payload = _error(message, str(answer.get("error_type", "invalid_request_error")))
            payload["error"].update(answer.get("error_extra") or {})
            self.send_json(int(answer["status"]), payload, answer.get("headers"))
            return
        content = str(answer.get("content", ""))
        usage = _usage(answer, body, content)
        calls = _tool_calls(answer)
        finish = "tool_calls" if calls else str(answer.get("finish_reason", "stop"))
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": (content or None) if calls else content,
            }
            if calls:
                message["tool_calls"] = calls
            self.send_json(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )
            return
        self.start_stream()
        if calls:
            self._stream_tool_calls(model, content, calls, body, usage)
            return
        pieces = split(content, fake.stream_pieces)
        hold = answer.get("hold_last")
        for number, piece in enumerate(pieces):
            if hold is not None and number == len(pieces) - 1:
                fake.wait_until(hold)
            self._event(model, [{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        if answer.get("drop"):
            self.drop()
            return
        if "stream_error" in answer:
            self.chunk(
                "data: " + json.dumps(_error(str(answer["stream_error"]), "server_error")) + "\n\n"
            )
        else:
            self._event(model, [{"index": 0, "delta": {}, "finish_reason": finish}])
            if (body.get("stream_options") or {}).get("include_usage"):
                self._event(model, [], usage)
            self.chunk("data: [DONE]\n\n")
        self.end_stream()

    def _stream_tool_calls(
        self,
        model: str,
        content: str,
        calls: list[dict[str, Any]],
        body: dict[str, Any],
        usage: dict[str, Any],
    ) -> None:
        """Stream optional text, then each tool call's name and its arguments in two pieces."""
        self._event(model, [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
        if content:
            self._event(model, [{"index": 0, "delta": {"content": content}, "finish_reason": None}])
        for number, call in enumerate(calls):
            head = {"index": number, "id": call["id"], "type": "function"}
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            first = {**head, "function": {"name": call["function"]["name"], "arguments": ""}}
            for delta in (
                first,
                {"index": number, "function": {"arguments": arguments[:half]}},
                {"index": number, "function": {"arguments": arguments[half:]}},
            ):
                self._event(
                    model, [{"index": 0, "delta": {"tool_calls": [delta]}, "finish_reason": None}]
                )
        self._event(model, [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event(model, [], usage)
        self.chunk("data: [DONE]\n\n")
        self.end_stream()

    def _event(
        self, model: str, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None
    ) -> None:
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": choices,
        }
        if usage is not None:
            payload["usage"] = usage
        self.chunk("data: " + json.dumps(payload) + "\n\n")


def _tool_calls(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A scripted {"tool_calls": [{"name": ..., "arguments": {...}}]} in the API's shape."""
    return [
        {
            "id": call.get("id", f"call_{number}"),
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
        }
        for number, call in enumerate(answer.get("tool_calls") or [])
    ]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started FakeOpenAI, stopped after the test."""
    with FakeOpenAI() as fake:
        yield fake
