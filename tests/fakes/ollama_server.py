"""A real HTTP server on 127.0.0.1 that speaks the Ollama wire protocol with scripted answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, Self, cast

import pytest

from tests.fakes.scripted import ScriptedHandler, ScriptedHTTPServer, poll_until, split

# A scripted chat answer: the content, a dict (see FakeOllama), or a callable of the request body.
Answer = str | dict[str, Any] | Callable[[dict[str, Any]], "str | dict[str, Any]"]

_CREATED_AT = "2026-01-01T00:00:00Z"


class FakeOllama:
    """Fake Ollama server; script it with `chat_answers` and `models`, inspect `requests`.

    `chat_answers` is consumed front to back, one item per /api/chat call:
    - a str: the assistant's content (streamed in several pieces when the client streams);
    - {"content": str, "prompt_eval_count": int, "eval_count": int}: content with usage figures;
    - {"status": 500, "error": "..."}: an HTTP error with an Ollama error body;
    - {"stall": seconds, ...}: wait that long (or until the server stops) before answering
      with the rest of the dict (or "" content);
    - {"content": str, "stream_error": "..."}: when streaming, send the content and then an
      {"error": ...} line (the client raises ResponseError with status -1);
    - {"content": str, "hold_last": callable}: when streaming, send all pieces but the last,
      then wait until the callable returns True;
    - {"content": str, "drop": True}: when streaming, the content, then the connection closes;
    - {"content": str, "finish_reason": "length"}: done_reason "length" (hit num_predict);
    - a callable taking the request body and returning one of the above.
    When the script is empty, `default_answer` is used; if that is None the server answers
    HTTP 400 "fake ollama: no scripted chat answer left" so the test fails loudly.
    """

    def __init__(self, models: dict[str, int] | None = None) -> None:
        self.models: dict[str, int] = dict(models) if models is not None else {"test-model": 8192}
        self.chat_answers: list[Answer] = []
        self.default_answer: Answer | None = None
        self.requests: list[dict[str, Any]] = []
        self.stream_pieces = 4
        self.capabilities: dict[str, list[str]] = {}  # per model; ["completion"] when absent
        self.max_active = 0  # the most chat requests answered at once
        self._active = 0
        self.max_stalled = 0  # the most scripted stalls under way at once (wait_stall)
        self._stalled = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ScriptedHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._started = False

    @property
    def url(self) -> str:
        """The base URL to give the Ollama client as host."""
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def chats(self) -> list[dict[str, Any]]:
        """The JSON bodies of the /api/chat requests received so far."""
        return [r["body"] for r in self.requests if r["path"] == "/api/chat"]

    def start(self) -> Self:
        """Start serving in a background thread."""
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def close(self) -> None:
        """Stop serving, cut stalls short and release the port."""
        self._stop.set()
        if self._started:
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """Pop the next scripted answer and normalise it to a dict."""
        with self._lock:
            answer = self.chat_answers.pop(0) if self.chat_answers else self.default_answer
        if answer is None:
            return {"status": 400, "error": "fake ollama: no scripted chat answer left"}
        if callable(answer):
            answer = answer(body)
        if isinstance(answer, str):
            return {"content": answer}
        return dict(answer)

    def wait_stall(self, seconds: float) -> None:
        """Block the handler thread for a scripted stall, ending early when the server stops;
        `max_stalled` counts the stalls under way at once (a client cannot have seen the answer
        of a request still stalling, so this is what a concurrency limit bounds)."""
        with self._lock:
            self._stalled += 1
            self.max_stalled = max(self.max_stalled, self._stalled)
        try:
            self._stop.wait(seconds)
        finally:
            with self._lock:
                self._stalled -= 1

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Poll a condition from a handler thread until it holds, the server stops, or timeout."""
        return poll_until(self._stop, condition, timeout)


class _Handler(ScriptedHandler):
    """Ollama's API on the shared plumbing: JSON bodies, NDJSON streams."""

    @property
    def fake(self) -> FakeOllama:
        return cast("FakeOllama", self.server.fake)

    def _chunk(self, payload: dict[str, Any]) -> None:
        data = (json.dumps(payload) + "\n").encode("utf-8")
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _not_found(self, model: str) -> None:
        self.send_json(404, {"error": f"model '{model}' not found"})

    def do_GET(self) -> None:
        """Serve /api/tags and /api/version."""
        self.read_body()
        try:
            if self.path == "/api/tags":
                self.send_json(200, {"models": [_tag(n) for n in self.fake.models]})
            elif self.path == "/api/version":
                self.send_json(200, {"version": "0.12.0"})
            else:
                self.send_json(404, {"error": f"unknown path {self.path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        """Serve /api/chat, /api/show and /api/embed."""
        body = self.read_body()
        try:
            if self.path == "/api/chat":
                with self.fake._lock:
                    self.fake._active += 1
                    self.fake.max_active = max(self.fake.max_active, self.fake._active)
                try:
                    self._chat(body)
                finally:
                    with self.fake._lock:
                        self.fake._active -= 1
            elif self.path == "/api/show":
                self._show(body)
            elif self.path == "/api/embed":
                self._embed(body)
            else:
                self.send_json(404, {"error": f"unknown path {self.path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _show(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if model not in self.fake.models:
            self._not_found(model)
            return
        self.send_json(
            200,
            {
                "modelfile": "",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": _details(),
                "model_info": {
                    "general.architecture": "llama",
                    "llama.context_length": self.fake.models[model],
                },
                "capabilities": self.fake.capabilities.get(model, ["completion"]),
                "modified_at": _CREATED_AT,
            },
        )

    def _embed(self, body: dict[str, Any]) -> None:
        """Deterministic 8-dimensional vectors from the text's bytes, one per input."""
        model = str(body.get("model", ""))
        if model not in self.fake.models:
            self._not_found(model)
            return
        raw = body.get("input", [])
        texts = [raw] if isinstance(raw, str) else list(raw)
        vectors = [_vector(str(text)) for text in texts]
        self.send_json(
            200, {"model": model, "embeddings": vectors, "prompt_eval_count": len(texts)}
        )

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if model not in self.fake.models:
            self._not_found(model)
            return
        answer = self.fake.next_answer(body)
        if "stall" in answer:
            self.fake.wait_stall(float(answer["stall"]))
        if "status" in answer:
            self.send_json(int(answer["status"]), {"error": str(answer.get("error", "fake error"))})
            return
        content = str(answer.get("content", ""))
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        final = {
            "model": model,
            "created_at": _CREATED_AT,
            "done": True,
            "done_reason": str(answer.get("finish_reason", "stop")),
            "total_duration": 1_000_000,
            "load_duration": 1000,
            "prompt_eval_count": int(answer.get("prompt_eval_count", max(1, prompt_chars // 4))),
            "prompt_eval_duration": 1000,
            "eval_count": int(answer.get("eval_count", max(1, len(content) // 4))),
            "eval_duration": 1000,
        }
        if not body.get("stream", True):
            self.send_json(200, {**final, "message": {"role": "assistant", "content": content}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = split(content, self.fake.stream_pieces)
        hold = answer.get("hold_last")
        for number, piece in enumerate(pieces):
            if hold is not None and number == len(pieces) - 1:
                self.fake.wait_until(hold)
            self._chunk(
                {
                    "model": model,
                    "created_at": _CREATED_AT,
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            )
        if answer.get("drop"):
            self.drop()
            return
        if "stream_error" in answer:
            self._chunk({"error": str(answer["stream_error"])})
        else:
            self._chunk({**final, "message": {"role": "assistant", "content": ""}})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _vector(text: str) -> list[float]:
    data = text.encode("utf-8") or b"\0"
    return [round(sum(data[i::8]) / (255.0 * len(data)), 6) for i in range(8)]


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "7B",
        "quantization_level": "Q4_K_M",
    }


def _tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": _CREATED_AT,
        "size": 4_000_000_000,
        "digest": "sha256:" + "0" * 64,
        "details": _details(),
    }


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A started FakeOllama, stopped after the test."""
    with FakeOllama() as fake:
        yield fake
