"""Shared plumbing of the fake provider servers: a threaded HTTP/1.1 server on 127.0.0.1 that
answers from a script, records requests, and writes JSON bodies, chunks and SSE events."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# A scripted answer: the content, a dict (see ScriptedServer), or a callable of the request body.
Answer = str | dict[str, Any] | Callable[[dict[str, Any]], "str | dict[str, Any]"]


def poll_until(stop: threading.Event, condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition` until it holds (True), or `stop` is set or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if stop.wait(0.02) or time.monotonic() >= deadline:
            return False
    return True


class ScriptedServer:
    """Base of the fakes. `answers` is consumed front to back, one item per chat call:

    - a str: the assistant's content (streamed in `stream_pieces` pieces when asked to stream);
    - {"content": str, "prompt_tokens": n, "completion_tokens": n, "cached_tokens": n};
    - {"status": 429, "error": "...", "headers": {"Retry-After": "1"}}: an HTTP error;
    - {"stall": seconds, ...}: wait (or until the server stops) before answering with the rest;
    - {"hold_last": callable}: when streaming, send every piece but the last, then wait until
      the callable returns True (polled) before sending the rest;
    - {"content": str, "stream_error": "..."}: when streaming, the content then an error event;
    - {"content": str, "tool_calls": [{"name": str, "arguments": {...}}]}: the model calls tools
      (OpenAI tool_calls, Anthropic tool_use blocks; streamed too);
    - {"content": str, "drop": True}: when streaming, the content, then the connection closes
      without ending the stream (a server that died mid-answer);
    - {"content": str, "finish_reason": "length"}: the answer stopped at its token limit (each
      fake says it its own way: finish_reason, done_reason, stop_reason);
    - a callable taking the request body and returning one of the above.
    When the script is empty, `default_answer` is used; if that is None the server answers
    HTTP 400 "no scripted answer left" so the test fails loudly.
    `api_key`, when set, is the only key accepted (anything else gets HTTP 401).
    """

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, models: list[str] | None = None, api_key: str | None = None) -> None:
        self.models: list[str] = list(models) if models is not None else ["test-model"]
        self.api_key = api_key
        self.answers: list[Answer] = []
        self.default_answer: Answer | None = None
        self.requests: list[dict[str, Any]] = []
        self.stream_pieces = 4
        self.active = 0  # chat requests being answered right now
        self.max_active = 0  # the most answered at once
        self.stalled = 0  # scripted stalls under way right now
        self.max_stalled = 0  # the most at once
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ScriptedHTTPServer(("127.0.0.1", 0), self.handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._started = False

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Self:
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def close(self) -> None:
        self._stop.set()
        if self._started:
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            answer = self.answers.pop(0) if self.answers else self.default_answer
        if answer is None:
            return {"status": 400, "error": "fake server: no scripted answer left"}
        if callable(answer):
            answer = answer(body)
        if isinstance(answer, str):
            return {"content": answer}
        return dict(answer)

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count a chat request as in flight while it is answered."""
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1

    def wait(self, seconds: float) -> None:
        """Block a handler thread, ending early when the server stops."""
        self._stop.wait(seconds)

    def stall(self, seconds: float) -> None:
        """A scripted stall (wait); `max_stalled` counts the stalls under way at once (a client
        cannot have seen the answer of a request still stalling, so this is what a concurrency
        limit bounds)."""
        with self._lock:
            self.stalled += 1
            self.max_stalled = max(self.max_stalled, self.stalled)
        try:
            self.wait(seconds)
        finally:
            with self._lock:
                self.stalled -= 1

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Poll a condition from a handler thread until it holds, the server stops, or timeout."""
        return poll_until(self._stop, condition, timeout)

    def calls(self, path_suffix: str) -> list[dict[str, Any]]:
        """Bodies of the requests whose path ends with path_suffix."""
        return [r["body"] for r in self.requests if r["path"].endswith(path_suffix)]


class ScriptedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: Any


class ScriptedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: JSON bodies with Content-Length, streams chunked."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: ScriptedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    @property
    def fake(self) -> Any:
        return self.server.fake

    def read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        self.fake.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        return body

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, text: str) -> None:
        data = text.encode("utf-8")
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def drop(self) -> None:
        """Close the connection mid-stream: no end chunk, so the client's read breaks."""
        self.wfile.flush()
        self.close_connection = True

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def split(text: str, pieces: int) -> list[str]:
    """Text cut into about `pieces` parts (none for empty text)."""
    if not text:
        return []
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)]
