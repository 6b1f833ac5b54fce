"""A model call stopped midway (cancelled, or the run cancelled from another process) still
leaves its cassette line: the request, the text streamed so far and how it ended; replaying the
cassette fails at the same call with the same words."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from core.errors import LLMCallStoppedError, LLMError
from core.llm.base import ChatRequest
from core.llm.openai_compat import OpenAICompatProvider
from core.llm.replay import CassetteRecorder, ReplayProvider
from tests.cassette import new_file, phase, recorded
from tests.clirun import cli, cli_json, spawn
from tests.conftest import make_repo
from tests.fakes.openai_server import FakeOpenAI
from tests.waiting import eventually, wait_until

MODEL = "gpt-test"
KEY = "sk-openai-test-key-for-stops-0001"
MODELS_YAML = f"""
models:
  fake-gpt:
    provider: openai
    model: {MODEL}
    max_tokens: 2000
    context_window: 100000
roles:
  planner: fake-gpt
  executor: fake-gpt
"""


def _lines(path: Path) -> list[dict[str, Any]]:
    return recorded(path)


async def test_a_call_cancelled_mid_stream_is_recorded_and_replays_as_stopped(
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "stopped.jsonl"
    released = threading.Event()
    request = ChatRequest(
        role="planner", model=MODEL, messages=[{"role": "user", "content": "plan it"}]
    )
    heard: list[str] = []
    with FakeOpenAI([MODEL]) as server:
        server.stream_pieces = 3
        server.answers = [{"content": "first second third", "hold_last": released.is_set}]
        provider = OpenAICompatProvider(
            server.base_url, None, timeout_seconds=30, connect_timeout_seconds=5
        )
        recorder = CassetteRecorder(cassette, provider)
        call = asyncio.ensure_future(recorder.chat(request, on_text=heard.append))
        try:
            await eventually(lambda: len("".join(heard)) > 0, what="the first streamed pieces")
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        finally:
            released.set()
            await provider.aclose()
    (entry,) = _lines(cassette)
    assert entry["request"]["messages"] == request.messages
    assert entry["role"] == "planner" and entry["provider"] == "openai"
    assert entry["response"]["content"] == "".join(heard)
    assert entry["error"]["type"] == "LLMCallStoppedError"
    assert "was stopped after" in entry["error"]["message"]
    with pytest.raises(LLMCallStoppedError) as replayed:
        await ReplayProvider(cassette, strict=True).chat(request)
    assert str(replayed.value) == entry["error"]["message"]


def test_a_recorded_run_cancelled_during_planning_replays_to_the_same_failure(
    tmp_path: Path,
) -> None:
    home, cassette = tmp_path / "home", tmp_path / "run.jsonl"
    home.mkdir()
    (home / "models.yaml").write_text(MODELS_YAML)
    released = threading.Event()
    with FakeOpenAI([MODEL], api_key=KEY) as server:
        # The planner's answer never finishes until the test is over: the run is cancelled there.
        server.answers = [{"content": '{"phases": []}', "hold_last": released.is_set}]
        env = {"ORCHESTRATOR__LLM__OPENAI__BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}
        repo = make_repo(tmp_path / "repo")
        proc = spawn(
            home,
            *("run", "Plan forever", "--repo", str(repo), "--headless"),
            *("--provider", "openai", "--record", str(cassette)),
            **env,
        )
        try:
            wait_until(lambda: server.active > 0, what="the planner's call to reach the server")
            (run,) = cli_json(home, "runs")
            cli(home, "cancel", run["id"], check=True)
            out, err = proc.communicate(timeout=120)
        finally:
            released.set()
            if proc.poll() is None:
                proc.kill()
    assert cli_json(home, "show", run["id"])["status"] == "cancelled", out + err
    (entry,) = _lines(cassette)
    assert entry["role"] == "planner" and entry["error"]["type"] == "LLMCallStoppedError"
    replayed = cli(
        home,
        *("run", "Plan forever", "--repo", str(make_repo(tmp_path / "again")), "--headless"),
        *("--provider", "replay", "--replay", str(cassette), "--replay-strict"),
    )
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert entry["error"]["message"] in replayed.stdout + replayed.stderr


@pytest.mark.parametrize(
    "answer",
    [{"stall": 5, "content": "late"}, {"content": "half an answer", "drop": True}],
    ids=["timeout", "server-dies"],
)
async def test_a_timed_out_or_broken_call_is_recorded_and_replays_to_the_same_error(
    tmp_path: Path, answer: dict[str, Any]
) -> None:
    cassette = tmp_path / "broken.jsonl"
    request = ChatRequest(
        role="executor", model=MODEL, messages=[{"role": "user", "content": "go"}]
    )
    with FakeOpenAI([MODEL]) as server:
        server.answers = [answer]
        provider = OpenAICompatProvider(
            server.base_url, None, timeout_seconds=0.5, connect_timeout_seconds=5
        )
        try:
            with pytest.raises(LLMError) as recorded:
                await CassetteRecorder(cassette, provider).chat(request, on_text=lambda _t: None)
        finally:
            await provider.aclose()
    (entry,) = _lines(cassette)
    assert entry["request"]["messages"] == request.messages
    assert entry["error"] == {"type": type(recorded.value).__name__, "message": str(recorded.value)}
    with pytest.raises(LLMError) as replayed:
        await ReplayProvider(cassette, strict=True).chat(request)
    assert type(replayed.value) is type(recorded.value)
    assert str(replayed.value) == str(recorded.value)


FAST_LEASE = {
    "ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "2",
    "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.5",
}


def test_a_call_in_flight_when_the_recorder_is_killed_leaves_its_started_line(
    tmp_path: Path,
) -> None:
    home, cassette = tmp_path / "home", tmp_path / "killed.jsonl"
    home.mkdir()
    (home / "models.yaml").write_text(MODELS_YAML)
    released = threading.Event()
    with FakeOpenAI([MODEL], api_key=KEY) as server:
        env = {
            "ORCHESTRATOR__LLM__OPENAI__BASE_URL": server.base_url,
            "OPENAI_API_KEY": KEY,
            **FAST_LEASE,
        }
        # The planner's answer is held open; the recording process is killed while it waits.
        server.answers = [{"content": '{"phases": []}', "hold_last": released.is_set}]
        repo = make_repo(tmp_path / "repo")
        proc = spawn(
            home,
            *("run", "Make one file", "--repo", str(repo), "--headless", "--yes"),
            *("--provider", "openai", "--record", str(cassette)),
            **env,
        )
        try:
            wait_until(lambda: server.active > 0, what="the planner's call to reach the server")
            proc.kill()
            out, _ = proc.communicate(timeout=60)
        finally:
            released.set()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -9
        text = cassette.read_text()
        assert KEY not in text
        (started,) = [json.loads(line) for line in text.splitlines()]
        assert started["started"] is True and started["role"] == "planner"
        assert started["provider"] == "openai" and "response" not in started
        assert started["request"]["messages"] == server.chats()[0]["messages"]

        # Replaying stops at that call, saying where and why, as the recorded run did.
        strict = ("--provider", "replay", "--replay", str(cassette), "--replay-strict")
        replayed = cli(
            home,
            *("run", "Make one file", "--repo", str(make_repo(tmp_path / "r1")), "--headless"),
            *strict,
        )
        said = replayed.stdout + replayed.stderr
        assert replayed.returncode == 1, said
        assert f"started at line 1 of cassette {cassette} has no answer" in said
        assert "killed or crashed during it" in said and "resume the recorded run" in said

        # Resuming the killed run records on into the same cassette.
        run_id = out.split()[1]  # the run prints "run ID" first
        wait_until(
            lambda: run_id in [r["id"] for r in cli_json(home, "runs", "--recoverable")],
            what="the killed run to be listed as recoverable",
        )
        server.answers = [
            json.dumps({"phases": [phase("phase-001")]}),
            new_file("one.txt", "one\n"),
        ]
        resumed = cli(home, "resume", run_id, "--headless", "--yes", **env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    lines = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert [(e["role"], bool(e.get("started"))) for e in lines] == [
        ("planner", True),  # the killed call: no entry follows it
        ("planner", True),
        ("planner", False),
        ("executor", True),
        ("executor", False),
    ]
    assert lines[1]["call"] == lines[2]["call"] != lines[0]["call"]
    assert lines[3]["call"] == lines[4]["call"]
    # Strict replay still stops at the killed call; plain replay answers from the resumed one.
    again = cli(
        home,
        *("run", "Make one file", "--repo", str(make_repo(tmp_path / "r2")), "--headless"),
        *strict,
    )
    assert again.returncode == 1 and "has no answer" in again.stdout + again.stderr
    plain = cli(
        home,
        *("run", "Make one file", "--repo", str(make_repo(tmp_path / "r3")), "--headless"),
        *("--provider", "replay", "--replay", str(cassette)),
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr


async def test_a_torn_last_line_is_not_joined_by_the_next_recording(tmp_path: Path) -> None:
    cassette = tmp_path / "torn.jsonl"
    torn = '{"call": "a", "started": true, "role": "plan'  # a line cut short by a crash
    cassette.write_text(torn)
    request = ChatRequest(role="planner", model=MODEL, messages=[{"role": "user", "content": "go"}])
    with FakeOpenAI([MODEL]) as server:
        server.answers = ["an answer"]
        provider = OpenAICompatProvider(
            server.base_url, None, timeout_seconds=30, connect_timeout_seconds=5
        )
        try:
            await CassetteRecorder(cassette, provider).chat(request)
        finally:
            await provider.aclose()
    first, *whole = cassette.read_text().splitlines()
    assert first == torn
    assert [json.loads(line)["response"]["content"] for line in whole[1:]] == ["an answer"]
