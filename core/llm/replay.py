"""Record chat calls to a JSONL cassette and replay them offline (demo, tests, bug reports).

A recorded call writes a "started" line (its request) when it begins and its entry (the answer
or the error, without the request again) when it ends, both carrying the call's id, by which
the entry is joined to its request on reading; a started line with no entry is a call the
recording process did not live through (kill -9), which replays as stopped. Cassettes of older
versions replay as they did: entries only (before calls had ids), or entries that repeat their
started line's request.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core import errors
from core.errors import InputError, LLMCallStoppedError, LLMError, ReplayMissError
from core.llm.base import ChatRequest, ChatResponse, LLMProvider, ModelInfo, TokenSink
from core.llm.client import emit_in_batches
from core.llm.rounds import listening


def cassette_entry(
    request: ChatRequest,
    response: ChatResponse | None,
    *,
    error: LLMError | None = None,
    round_messages: list[dict[str, str]] | None = None,
    problem: str | None = None,
) -> dict[str, Any]:
    """The one JSON object a cassette holds per call: identity, request essentials, and the
    answer or the error it ended with. A "round" entry is one answer inside a call (a schema
    repair round), kept for the bug report; replay answers only from whole-call entries."""
    entry: dict[str, Any] = {
        "role": request.role,
        "provider": response.provider if response is not None else None,
        "phase": request.phase,
        "attempt": request.attempt,
        "repair": request.repair,
        "request": {
            "model": request.model,
            "messages": request.messages if round_messages is None else round_messages,
            "json_schema": request.json_schema,
        },
        "response": {
            "content": response.content if response is not None else "",
            "prompt_tokens": response.prompt_tokens if response is not None else 0,
            "completion_tokens": response.completion_tokens if response is not None else 0,
            "cached_tokens": response.cached_tokens if response is not None else 0,
        },
    }
    if response is not None and response.truncated:
        entry["response"]["truncated"] = True
    if round_messages is not None:
        entry["round"] = True
        entry["problem"] = problem
    if error is not None:
        entry["error"] = {"type": type(error).__name__, "message": str(error)}
    return entry


def started_entry(request: ChatRequest, provider: str, call: str) -> dict[str, Any]:
    """The line written when a call begins: who asks what (the request as its entry will hold
    it, never a key or a header), so a process killed during the call still leaves it."""
    entry = cassette_entry(request, None)
    del entry["response"]
    return {"call": call, "started": True, **entry, "provider": provider}


def finished_entry(call: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The line written when a call ends: its entry under the call's id, without the request
    its started line already holds (cassette_lines joins them again)."""
    return {"call": call, **{key: value for key, value in entry.items() if key != "request"}}


def stopped_entry(
    request: ChatRequest, provider: str, stop: BaseException, heard: str, seconds: float
) -> dict[str, Any]:
    """The cassette line of a call that ended without an answer or an LLMError: cancelled or
    interrupted mid-call (replayed as LLMCallStoppedError), or an error no provider mapped
    (replayed as an LLMError with its text); `heard` is the text streamed before it stopped."""
    entry = cassette_entry(request, None)
    entry["provider"] = provider
    entry["response"]["content"] = heard
    if isinstance(stop, Exception):
        entry["error"] = {"type": type(stop).__name__, "message": f"{type(stop).__name__}: {stop}"}
    else:
        entry["error"] = {
            "type": LLMCallStoppedError.__name__,
            "message": (
                f"the call to {provider} ({request.role}, model {request.model}) was stopped "
                f"after {seconds:.1f} s before it answered ({type(stop).__name__}: the run was "
                "cancelled, interrupted or timed out during it when this cassette was recorded)"
            ),
        }
    return entry


class CassetteRecorder:
    """An LLMProvider that forwards to another and appends every request and answer to a
    cassette as it happens: each call's start, each round inside it, the call's answer, and its
    failure, including a call stopped midway (cancelled, interrupted) or failing with an
    unmapped error."""

    def __init__(self, path: str | Path, inner: LLMProvider) -> None:
        self.path = Path(path)
        self.inner = inner
        self.name = inner.name
        self._line_start_checked = False  # the cassette's end was checked for a torn line

    async def chat(self, request: ChatRequest, on_text: TokenSink | None = None) -> ChatResponse:
        """Forward the call, appending a line when it starts, one per round, and one for its
        answer or error (all with the call's id)."""

        call_id = uuid.uuid4().hex[:16]  # pairs the started line with the call's entry
        self._append(started_entry(request, self.provider_name_for(request.model), call_id))

        def round_heard(
            call: ChatRequest,
            messages: list[dict[str, str]],
            answer: ChatResponse,
            problem: str | None,
        ) -> None:
            entry = cassette_entry(call, answer, round_messages=messages, problem=problem)
            self._append({"call": call_id, **entry})

        heard: list[str] = []  # streamed text, kept for the line of a call stopped midway

        def hear(text: str) -> None:
            heard.append(text)
            if on_text is not None:
                on_text(text)

        started = time.monotonic()
        try:
            with listening(round_heard):
                response = await self.inner.chat(request, hear if on_text is not None else None)
        except LLMError as error:
            spent = getattr(error, "spent", None)
            answer = spent if isinstance(spent, ChatResponse) else None
            entry = cassette_entry(request, answer, error=error)
            entry["provider"] = entry["provider"] or self.name
            self._append(finished_entry(call_id, entry))
            raise
        except BaseException as stop:  # cancelled, interrupted, or an error no provider mapped
            seconds = time.monotonic() - started
            entry = stopped_entry(request, self.name, stop, "".join(heard), seconds)
            self._append(finished_entry(call_id, entry))
            raise
        self._append(finished_entry(call_id, cassette_entry(request, response)))
        return response

    def _append(self, entry: dict[str, Any]) -> None:
        """One line in one append write, so a killed run keeps every line it wrote whole; the
        first line this recorder writes starts on a line of its own even after a torn one."""
        data = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if not self._line_start_checked:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                self._line_start_checked = True
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)

    async def model_info(self, model: str) -> ModelInfo:
        """Forwarded to the recorded provider."""
        return await self.inner.model_info(model)

    def provider_name_for(self, model: str) -> str:
        """The recorded provider's name for a model (a router answers per model)."""
        route = getattr(self.inner, "provider_name_for", None)
        return str(route(model)) if callable(route) else self.inner.name

    async def aclose(self) -> None:
        """Close the recorded provider."""
        await self.inner.aclose()


@dataclass(frozen=True)
class _Entry:
    line: int
    role: str
    phase: str | None
    attempt: int | None
    repair: int
    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None
    model: str
    content: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    round: bool = False  # one answer inside a call: a record for the reader, never replayed
    error_type: str | None = None  # the call failed with this error (replay raises it again)
    error_message: str = ""
    truncated: bool = False


def cassette_lines(path: str | Path) -> list[tuple[int, Any]]:
    """A cassette's lines as (line number, JSON value), each call's entry holding the request
    of its started line again when it does not carry one; any unreadable line is an
    InputError naming the file and line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"Replay cassette {file} does not exist; pass an existing --replay FILE")
    except OSError as error:
        raise InputError(f"Replay cassette {file} cannot be read: {error}") from error
    lines: list[tuple[int, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            lines.append((number, json.loads(raw)))
        except json.JSONDecodeError as error:
            raise InputError(
                f"Replay cassette {file} line {number} is not valid JSON: {error.msg} "
                f"(column {error.colno})"
            ) from error
    asked = {
        obj["call"]: obj.get("request")
        for _, obj in lines
        if isinstance(obj, dict) and obj.get("started") and obj.get("call")
    }
    return [
        (number, {**obj, "request": asked[obj["call"]]})
        if isinstance(obj, dict)
        and "request" not in obj
        and not obj.get("started")
        and obj.get("call") in asked
        else (number, obj)
        for number, obj in lines
    ]


def load_cassette(path: str | Path) -> list[_Entry]:
    """Read and check a cassette; any problem is an InputError naming the file and line."""
    file = Path(path)
    lines = cassette_lines(file)
    # A call whose entry follows its started line replays from that entry.
    ended = {
        obj.get("call")
        for _, obj in lines
        if isinstance(obj, dict) and not obj.get("started") and not obj.get("round")
    }
    entries: list[_Entry] = []
    for number, obj in lines:
        try:
            if isinstance(obj, dict) and obj.get("started"):
                if obj.get("call") not in ended:
                    entries.append(_unfinished_entry(obj, number, file))
                continue
            entries.append(_parse_entry(obj, number))
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(
                f"Replay cassette {file} line {number} is not a cassette entry: {error!r}; "
                'expected {"role", "phase", "attempt", "repair", "request", "response"}'
            ) from error
    return entries


def _unfinished_entry(obj: dict[str, Any], line: int, file: Path) -> _Entry:
    """A started call with no entry: the recording process died during it (kill -9, a crash,
    a power cut), so it replays as a stopped call that says so."""
    call = _parse_entry({**obj, "response": {"content": ""}}, line)
    provider = obj.get("provider") or "the provider"
    return replace(
        call,
        error_type=LLMCallStoppedError.__name__,
        error_message=(
            f"the call to {provider} ({call.role}, phase {call.phase}, attempt {call.attempt}, "
            f"model {call.model}) started at line {line} of cassette {file} has no answer: the "
            "recording process was killed or crashed during it, so the recorded run stopped "
            "there and replay stops at the same call. To replay past it, resume the recorded "
            "run (it records on into this cassette; replay without --replay-strict then uses "
            "the answer it adds) or record the run again"
        ),
    )


def _parse_entry(obj: Any, line: int) -> _Entry:
    if not isinstance(obj, dict):
        raise TypeError("the line is not a JSON object")
    request = obj.get("request") or {}
    response = obj["response"]
    if not isinstance(response, dict) or not isinstance(response.get("content"), str):
        raise TypeError("response.content must be a string")
    attempt = obj.get("attempt")
    failure = obj.get("error")
    if failure is not None and not isinstance(failure, dict):
        raise TypeError("error must be an object with type and message")
    return _Entry(
        line=line,
        role=str(obj["role"]),
        phase=None if obj.get("phase") is None else str(obj["phase"]),
        attempt=None if attempt is None else int(attempt),
        repair=int(obj.get("repair") or 0),
        messages=list(request.get("messages") or []),
        json_schema=request.get("json_schema"),
        model=str(request.get("model") or ""),
        content=response["content"],
        prompt_tokens=int(response.get("prompt_tokens") or 0),
        completion_tokens=int(response.get("completion_tokens") or 0),
        cached_tokens=int(response.get("cached_tokens") or 0),
        round=bool(obj.get("round")),
        error_type=None if failure is None else str(failure.get("type") or "LLMError"),
        error_message="" if failure is None else str(failure.get("message") or ""),
        truncated=bool(response.get("truncated")),
    )


def _recorded_error(entry: _Entry) -> LLMError:
    """The error a recorded call ended with, raised again on replay (LLMError if unknown)."""
    kind = getattr(errors, entry.error_type or "", None)
    if not (isinstance(kind, type) and issubclass(kind, LLMError)):
        kind = LLMError
    return kind(entry.error_message or f"recorded failure (cassette line {entry.line})")


class ReplayProvider:
    """Answers chat calls from a cassette: by role/phase/attempt, or by exact request when strict."""

    name = "replay"

    def __init__(self, path: str | Path, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        self._entries = [e for e in load_cassette(self.path) if not e.round]
        # Entries by (role, phase, repair), in cassette order: a call looks at its own only.
        self._by_key: dict[tuple[Any, ...], list[_Entry]] = {}
        for entry in self._entries:
            self._by_key.setdefault((entry.role, entry.phase, entry.repair), []).append(entry)
        self._used: set[int] = set()  # lines already answered (strict replay goes in order)

    def __len__(self) -> int:
        return len(self._entries)

    async def chat(self, request: ChatRequest, on_text: TokenSink | None = None) -> ChatResponse:
        """The recorded answer for this request; ReplayMissError when the cassette has none."""
        entry = self._match_strict(request) if self.strict else self._match(request)
        if entry is None:
            raise ReplayMissError(self._miss_message(request))
        if entry.error_type is not None:
            raise _recorded_error(entry)
        emit_in_batches(on_text, entry.content)
        return ChatResponse(
            content=entry.content,
            model=request.model,
            provider=self.name,
            prompt_tokens=entry.prompt_tokens,
            completion_tokens=entry.completion_tokens,
            cached_tokens=entry.cached_tokens,
            raw={"cassette_line": entry.line},
            truncated=entry.truncated,
        )

    async def model_info(self, model: str) -> ModelInfo:
        """Every model is "present": the cassette answers regardless of its name."""
        return ModelInfo(name=model, present=True, context_length=None)

    async def list_models(self) -> list[str]:
        """The model names the cassette was recorded with."""
        return sorted({e.model for e in self._entries if e.model})

    async def aclose(self) -> None:
        """Nothing to close."""

    def _match(self, request: ChatRequest) -> _Entry | None:
        best: _Entry | None = None
        for entry in self._by_key.get((request.role, request.phase, request.repair), ()):
            if not _attempt_fits(entry.attempt, request.attempt):
                continue
            # Highest recorded attempt wins; on a tie the later line wins.
            if best is None or (entry.attempt or 0) >= (best.attempt or 0):
                best = entry
        return best

    def _match_strict(self, request: ChatRequest) -> _Entry | None:
        """The first unused entry with exactly these messages and schema (so a recorded failure
        and the retry that followed it replay in order), else the last one that matches."""
        found: _Entry | None = None
        for entry in self._entries:
            if entry.messages == request.messages and entry.json_schema == request.json_schema:
                if entry.line not in self._used:
                    self._used.add(entry.line)
                    return entry
                found = entry
        return found

    def _miss_message(self, request: ChatRequest) -> str:
        how = (
            "no entry has exactly these messages and JSON schema (strict replay)"
            if self.strict
            else "no entry has this role, phase and repair with an attempt at or below it"
        )
        return (
            f"Replay cassette {self.path} ({len(self._entries)} entries) holds no answer for "
            f"role={request.role} phase={request.phase} attempt={request.attempt} "
            f"repair={request.repair}: {how}. Record the cassette again against a live provider."
        )


def _attempt_fits(recorded: int | None, requested: int | None) -> bool:
    if requested is None or recorded is None:
        return recorded is None and requested is None
    return recorded <= requested
