"""Cassette recording and replay, and the provider registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, InputError, LLMCallStoppedError, ReplayMissError
from core.llm import registry
from core.llm.base import ChatRequest
from core.llm.ollama import OllamaProvider
from core.llm.registry import known_providers, make_provider, register_provider
from core.llm.replay import CassetteRecorder, ReplayProvider
from tests.cassette import recorded
from tests.fakes.ollama_server import FakeOllama  # the fake_ollama fixture comes from conftest.py

MODEL = "test-model"
SCHEMA = {"type": "object", "properties": {"phases": {"type": "array"}}}


def req(
    role: str,
    text: str,
    phase: str | None = None,
    attempt: int | None = None,
    repair: int = 0,
    schema: dict[str, Any] | None = None,
) -> ChatRequest:
    return ChatRequest(
        role=role,
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        json_schema=schema,
        phase=phase,
        attempt=attempt,
        repair=repair,
    )


def entry(
    role: str,
    content: str,
    phase: str | None = None,
    attempt: int | None = None,
    repair: int = 0,
    text: str = "q",
) -> dict[str, Any]:
    return {
        "role": role,
        "phase": phase,
        "attempt": attempt,
        "repair": repair,
        "request": {
            "model": MODEL,
            "messages": [{"role": "user", "content": text}],
            "json_schema": None,
        },
        "response": {"content": content, "prompt_tokens": 3, "completion_tokens": 4},
    }


def write(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


async def test_record_then_replay_round_trip(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    cassette = tmp_path / "sub" / "run.jsonl"
    fake_ollama.chat_answers = [
        {"content": '{"phases": []}', "prompt_eval_count": 10, "eval_count": 5},
        {"content": "edit blocks", "prompt_eval_count": 20, "eval_count": 7},
    ]
    recorder = CassetteRecorder(cassette, OllamaProvider(fake_ollama.url, 5, 1))
    assert recorder.name == "ollama"
    plan_req = req("planner", "plan it", schema=SCHEMA)
    exec_req = req("executor", "do phase 1", phase="phase-001", attempt=1)
    await recorder.chat(plan_req)
    await recorder.chat(exec_req, on_text=lambda _t: None)
    await recorder.aclose()

    # Each request is written once, on its call's started line; the entry refers to it by id.
    raw = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert [(line["role"], "request" in line, bool(line.get("started"))) for line in raw] == [
        ("planner", True, True),
        ("planner", False, False),
        ("executor", True, True),
        ("executor", False, False),
    ]
    assert raw[0]["call"] == raw[1]["call"] != raw[2]["call"] == raw[3]["call"]
    assert cassette.read_text().count("do phase 1") == 1
    lines = recorded(cassette)  # the entries, each joined to its started line's request
    assert len(lines) == 2
    assert set(lines[0]) == {
        "call",
        "role",
        "provider",
        "phase",
        "attempt",
        "repair",
        "request",
        "response",
    }
    assert lines[0]["provider"] == "ollama"
    assert set(lines[0]["request"]) == {"model", "messages", "json_schema"}
    assert lines[0]["request"]["json_schema"] == SCHEMA
    assert lines[1]["response"] == {
        "content": "edit blocks",
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "cached_tokens": 0,
    }

    for strict in (False, True):
        replay = ReplayProvider(cassette, strict=strict)
        assert replay.name == "replay" and len(replay) == 2
        shown: list[str] = []
        again = await replay.chat(exec_req, on_text=shown.append)
        assert again.content == "edit blocks" and "".join(shown) == "edit blocks"
        assert (again.prompt_tokens, again.completion_tokens) == (20, 7)
        assert (await replay.chat(plan_req)).content == '{"phases": []}'
    info = await ReplayProvider(cassette).model_info("anything")
    assert info.present and info.context_length is None


async def test_attempt_falls_back_to_highest_recorded_at_or_below(tmp_path: Path) -> None:
    cassette = write(
        tmp_path / "c.jsonl",
        [
            entry("planner", "plan v1"),
            entry("planner", "plan v2"),  # same key: the last wins
            entry("planner", "repaired", repair=1),
            entry("executor", "attempt one", "phase-001", 1),
            entry("executor", "attempt three", "phase-001", 3),
            entry("executor", "other phase", "phase-002", 1),
        ],
    )
    replay = ReplayProvider(cassette)
    assert (await replay.chat(req("planner", "x"))).content == "plan v2"
    assert (await replay.chat(req("planner", "x", repair=1))).content == "repaired"
    answers = [
        (await replay.chat(req("executor", "x", "phase-001", n))).content for n in (1, 2, 3, 7)
    ]
    assert answers == ["attempt one", "attempt one", "attempt three", "attempt three"]
    with pytest.raises(ReplayMissError):
        await replay.chat(req("executor", "x", "phase-001", None))  # None matches only None
    with pytest.raises(ReplayMissError):
        await replay.chat(req("executor", "x", "phase-003", 1))


async def test_strict_miss_names_the_request_and_cassette(tmp_path: Path) -> None:
    cassette = write(
        tmp_path / "c.jsonl",
        [
            entry("executor", "a", "phase-001", 1, text="one"),
            entry("executor", "b", "phase-001", 2, text="two"),
        ],
    )
    replay = ReplayProvider(cassette, strict=True)
    assert (await replay.chat(req("executor", "two", "phase-001", 1))).content == "b"
    with pytest.raises(ReplayMissError) as caught:
        await replay.chat(req("executor", "three", "phase-001", 2))
    message = str(caught.value)
    for part in ("role=executor", "phase=phase-001", "attempt=2", str(cassette), "2 entries"):
        assert part in message


def test_bad_cassette_line_names_file_and_line(tmp_path: Path) -> None:
    cassette = tmp_path / "bad.jsonl"
    cassette.write_text(json.dumps(entry("planner", "ok")) + "\n{not json\n")
    with pytest.raises(InputError, match=r"bad\.jsonl line 2 is not valid JSON"):
        ReplayProvider(cassette)
    cassette.write_text(json.dumps({"role": "planner", "response": {}}) + "\n")
    with pytest.raises(InputError, match="line 1"):
        ReplayProvider(cassette)
    with pytest.raises(InputError, match="does not exist"):
        ReplayProvider(tmp_path / "missing.jsonl")


def test_cassette_with_null_request_is_accepted(tmp_path: Path) -> None:
    data = entry("planner", "plan")
    data["request"] = None
    assert len(ReplayProvider(write(tmp_path / "c.jsonl", [data]))) == 1


async def test_registry(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    settings = {"host": fake_ollama.url, "timeout_seconds": 5.0, "connect_timeout_seconds": 1.0}
    with pytest.raises(ConfigError, match="known providers: .*ollama.*replay"):
        make_provider("nonesuch", **settings)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--provider replay needs --replay FILE"):
        make_provider("replay", **settings)  # type: ignore[arg-type]
    cassette = write(tmp_path / "c.jsonl", [entry("planner", "plan")])
    replay = make_provider("replay", replay_path=cassette, replay_strict=True, **settings)  # type: ignore[arg-type]
    assert isinstance(replay, ReplayProvider) and replay.strict
    live = make_provider("ollama", record_path=tmp_path / "rec.jsonl", **settings)  # type: ignore[arg-type]
    assert isinstance(live, CassetteRecorder) and isinstance(live.inner, OllamaProvider)
    await live.aclose()

    register_provider("echo-test", lambda **kw: ReplayProvider(kw["replay_path"]))
    try:
        assert "echo-test" in known_providers()
        made = make_provider("echo-test", replay_path=cassette, **settings)  # type: ignore[arg-type]
        assert isinstance(made, ReplayProvider)
    finally:
        registry._REGISTRY.pop("echo-test", None)


async def test_old_entries_calls_with_ids_and_an_unfinished_call_replay_together(
    tmp_path: Path,
) -> None:
    """A cassette begun by the oldest code (entries without call ids), continued by older code
    (entries repeating their started line's request) and by today's (entries without it), whose
    last call only started: every entry answers, the unfinished call stops replay."""
    started = {"call": "c1", "started": True, **entry("executor", "", "phase-001", 1)}
    del started["response"]
    unfinished = {**started, "call": "c2", "phase": "phase-002", "provider": "openai"}
    today = {**started, "call": "c3", "phase": "phase-003", **entry("executor", "", text="q3")}
    del today["response"]
    answer = {"call": "c3", **entry("executor", "more edits", "phase-003", 1)}
    del answer["request"]
    cassette = write(
        tmp_path / "mixed.jsonl",
        [
            entry("planner", "the plan"),
            started,
            {"call": "c1", **entry("executor", "edits", "phase-001", 1)},
            {**today, "phase": "phase-003", "attempt": 1},
            answer,
            unfinished,
        ],
    )
    for strict in (False, True):
        replay = ReplayProvider(cassette, strict=strict)
        assert len(replay) == 4
        assert (await replay.chat(req("planner", "q"))).content == "the plan"
        assert (await replay.chat(req("executor", "q", "phase-001", 1))).content == "edits"
        # Strict replay matches today's entry by the request its started line holds.
        third = await replay.chat(req("executor", "q3", "phase-003", 1))
        assert third.content == "more edits" and third.raw == {"cassette_line": 5}
        with pytest.raises(LLMCallStoppedError) as stopped:
            await replay.chat(req("executor", "q", "phase-002", 1))
        message = str(stopped.value)
        assert f"started at line 6 of cassette {cassette} has no answer" in message
        assert "openai (executor, phase phase-002, attempt 1, model test-model)" in message
