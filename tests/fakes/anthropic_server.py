"""A real HTTP server on 127.0.0.1 speaking Anthropic's messages API (JSON and SSE streams)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.scripted import ScriptedHandler, ScriptedServer, split

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class FakeAnthropic(ScriptedServer):
    """Fake Anthropic API; script it with `answers` (see ScriptedServer)."""

    def __init__(self, models: list[str] | None = None, api_key: str | None = None) -> None:
        self.handler = _Handler
        super().__init__(models, api_key)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def messages(self) -> list[dict[str, Any]]:
        return self.calls("/v1/messages")


def _error(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _model(name: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": "2025-01-01T00:00:00Z",
    }


class _Handler(ScriptedHandler):
    def _key(self) -> str:
        """The key from x-api-key, or from a Bearer header (which newer clients send)."""
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return self.headers.get("x-api-key", "") or bearer

    def _authorised(self) -> bool:
        key = self._key()
        if self.fake.api_key is None or key == self.fake.api_key:
            return True
        self.send_json(401, _error(401, "invalid x-api-key"))
        return False

    def do_GET(self) -> None:
        self.read_body()
        try:
            if not self._authorised():
                return
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/v1/models":
                data = [_model(m) for m in self.fake.models]
                first = data[0]["id"] if data else None
                last = data[-1]["id"] if data else None
                self.send_json(
                    200, {"data": data, "has_more": False, "first_id": first, "last_id": last}
                )
            elif path.startswith("/v1/models/"):
                name = path.removeprefix("/v1/models/")
                if name in self.fake.models:
                    self.send_json(200, _model(name))
                else:
                    self.send_json(404, _error(404, f"model: {name}"))
            else:
                self.send_json(404, _error(404, f"unknown path {self.path}"))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        body = self.read_body()
        try:
            if not self._authorised():
                return
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/v1/messages":
                with self.fake.track():
                    self._messages(body)
            elif path == "/v1/messages/count_tokens":
                chars = len(json.dumps(body.get("messages", []))) + len(str(body.get("system", "")))
                self.send_json(200, {"input_tokens": max(1, chars // 4)})
            else:
                self.send_json(404, _error(404, f"unknown path {self.path}"))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _messages(self, body: dict[str, Any]) -> None:
        fake: FakeAnthropic = self.fake
        model = str(body.get("model", ""))
        if model not in fake.models and "*" not in fake.models:  # "*": any model name
            self.send_json(404, _error(404, f"model: {model}"))
            return
        answer = fake.next_answer(body)
        if "stall" in answer:
            fake.stall(float(answer["stall"]))
        if "status" in answer:
            status = int(answer["status"])
            message = str(answer.get("error", "fake error"))
            if answer.get("echo_key"):
                message += f" You sent: {self._key()}"
            self.send_json(status, _error(status, message), answer.get("headers"))
            return
        content = str(answer.get("content", ""))
        stop = {"length": "max_tokens"}.get(str(answer.get("finish_reason")), "end_turn")
        chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        chars += len(str(body.get("system", "")))
        usage = {
            "input_tokens": int(answer.get("prompt_tokens", max(1, chars // 4))),
            "output_tokens": int(answer.get("completion_tokens", max(1, len(content) // 4))),
            "cache_read_input_tokens": int(answer.get("cached_tokens", 0)),
            "cache_creation_input_tokens": 0,
        }
        uses = _tool_uses(answer)
        blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": content}] if content or not uses else []
        )
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks + uses,
            "stop_reason": "tool_use" if uses else stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self.send_json(200, message)
            return
        self.start_stream()
        if uses:
            self._stream_tool_uses(message, content, uses, usage)
            return
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        self._event("message_start", {"type": "message_start", "message": start})
        self._event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        self._event("ping", {"type": "ping"})
        pieces = split(content, fake.stream_pieces)
        hold = answer.get("hold_last")
        for number, piece in enumerate(pieces):
            if hold is not None and number == len(pieces) - 1:
                fake.wait_until(hold)
            self._event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        if answer.get("drop"):
            self.drop()
            return
        if "stream_error" in answer:
            self._event("error", _error(529, str(answer["stream_error"])))
        else:
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
            self._event("message_stop", {"type": "message_stop"})
        self.end_stream()

    def _stream_tool_uses(
        self,
        message: dict[str, Any],
        content: str,
        uses: list[dict[str, Any]],
        usage: dict[str, Any],
    ) -> None:
        """Stream optional text, then each tool_use block with its input JSON in two pieces."""
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        self._event("message_start", {"type": "message_start", "message": start})
        index = 0
        if content:
            self._block(
                index, {"type": "text", "text": ""}, [{"type": "text_delta", "text": content}]
            )
            index += 1
        for use in uses:
            raw = json.dumps(use["input"])
            half = len(raw) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[:half]},
                {"type": "input_json_delta", "partial_json": raw[half:]},
            ]
            self._block(index, {**use, "input": {}}, deltas)
            index += 1
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        self._event("message_stop", {"type": "message_stop"})
        self.end_stream()

    def _block(self, index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
        for delta in deltas:
            self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        self.chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n")


def _tool_uses(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A scripted {"tool_calls": [{"name": ..., "arguments": {...}}]} as tool_use blocks."""
    return [
        {
            "type": "tool_use",
            "id": call.get("id", f"toolu_{number:02d}"),
            "name": call["name"],
            "input": call["arguments"],
        }
        for number, call in enumerate(answer.get("tool_calls") or [])
    ]


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started FakeAnthropic, stopped after the test."""
    with FakeAnthropic() as fake:
        yield fake
