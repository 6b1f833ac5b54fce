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
    return [json.loads(line) for line in path.read_text().splitlines()]


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
