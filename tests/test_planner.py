"""Plan validation and the planner's one repair round, against the fake Ollama server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.errors import PlanError
from core.llm.client import LLMClient
from core.llm.ollama import OllamaProvider
from core.plan import PlanValidationError, parse_plan, plan_json_schema, topological_order
from core.planner import make_plan
from tests.fakes.ollama_server import FakeOllama  # the fake_ollama fixture comes from conftest.py

MODEL = "test-model"


def phase(pid: str, deps: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": pid,
        "name": f"Work {pid}",
        "description": f"Do {pid}",
        "dependencies": deps or [],
        "estimated_complexity": "low",
        "risk_level": "low",
        "verification_criteria": ["tests pass"],
        **extra,
    }


def plan_text(*phases: dict[str, Any]) -> str:
    return json.dumps({"phases": list(phases)})


@pytest.fixture
async def llm(fake_ollama: FakeOllama) -> AsyncIterator[LLMClient]:
    client = LLMClient(OllamaProvider(fake_ollama.url, 5, 1), backoff_seconds=0)
    yield client
    await client.aclose()


async def plan_for(llm: LLMClient, **kwargs: Any) -> Any:
    return await make_plan(
        llm,
        task="Add a greeting module",
        model=MODEL,
        context="files:\n- src/app.py\n",
        run_id="run-1",
        temperature=0.1,
        max_tokens=2000,
        context_window=8192,
        **kwargs,
    )


# --- core.plan -------------------------------------------------------------------------------


def test_parse_plan_accepts_fence_and_defaults() -> None:
    text = (
        "```json\n"
        + json.dumps({"phases": [{"id": "p1", "name": "n", "description": "d"}]})
        + "\n```"
    )
    plan = parse_plan(text)
    only = plan.phases[0]
    assert (only.estimated_complexity, only.risk_level, only.dependencies) == ("medium", "low", [])


def test_parse_plan_errors_are_precise() -> None:
    with pytest.raises(PlanValidationError, match="not valid JSON"):
        parse_plan("Here is the plan: {phases: oops")
    with pytest.raises(PlanValidationError, match=r"phase 2 \(id 'p2'\) field 'risk_level'"):
        parse_plan(plan_text(phase("p1"), phase("p2", risk_level="extreme")))
    with pytest.raises(PlanValidationError, match="field 'phases'"):
        parse_plan('{"phases": []}')
    with pytest.raises(PlanValidationError, match="Duplicate phase id 'p1'"):
        parse_plan(plan_text(phase("p1"), phase("p1")))
    with pytest.raises(PlanValidationError, match="phase 'p2' depends on unknown phase id 'p9'"):
        parse_plan(plan_text(phase("p1"), phase("p2", ["p9"])))
    with pytest.raises(PlanValidationError, match="p2 -> p3 -> p2"):
        parse_plan(plan_text(phase("p1"), phase("p2", ["p1", "p3"]), phase("p3", ["p2"])))
    with pytest.raises(PlanValidationError, match="p1 -> p1"):
        parse_plan(plan_text(phase("p1", ["p1"])))


def test_topological_order_and_schema() -> None:
    plan = parse_plan(plan_text(phase("c", ["b"]), phase("a"), phase("b", ["a"]), phase("d")))
    assert topological_order(plan) == ["a", "b", "c", "d"]
    schema = plan_json_schema()
    items = schema["properties"]["phases"]["items"]
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    assert set(items["required"]) == {
        "id",
        "name",
        "description",
        "dependencies",
        "estimated_complexity",
        "risk_level",
        "verification_criteria",
    }
    assert items["properties"]["risk_level"]["enum"] == ["low", "medium", "high", "critical"]


# --- core.planner ----------------------------------------------------------------------------


async def test_valid_plan(fake_ollama: FakeOllama, llm: LLMClient) -> None:
    answer = plan_text(phase("phase-001"), phase("phase-002", ["phase-001"]))
    fake_ollama.chat_answers = [answer]
    shown: list[str] = []
    plan, raw = await plan_for(llm, on_text=shown.append)
    assert [p.id for p in plan.phases] == ["phase-001", "phase-002"]
    assert raw == answer and "".join(shown) == answer
    body = fake_ollama.chats()[0]
    assert body["format"] == plan_json_schema()
    assert (
        body["messages"][0]["role"] == "system"
        and "verification_criteria" in body["messages"][0]["content"]
    )
    assert "Add a greeting module" in body["messages"][1]["content"]
    assert "src/app.py" in body["messages"][1]["content"]


async def test_invalid_json_is_repaired(fake_ollama: FakeOllama, llm: LLMClient) -> None:
    fake_ollama.chat_answers = ["I think the plan is: phases...", plan_text(phase("phase-001"))]
    plan, _raw = await plan_for(llm)
    assert [p.id for p in plan.phases] == ["phase-001"]
    repair = fake_ollama.chats()[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "I think the plan is: phases..."}
    assert repair[-1]["role"] == "user" and "not valid JSON" in repair[-1]["content"]


async def test_unknown_dependency_is_repaired(fake_ollama: FakeOllama, llm: LLMClient) -> None:
    fake_ollama.chat_answers = [
        plan_text(phase("phase-001"), phase("phase-002", ["phase-009"])),
        plan_text(phase("phase-001"), phase("phase-002", ["phase-001"])),
    ]
    plan, _raw = await plan_for(llm)
    assert plan.phases[1].dependencies == ["phase-001"]
    error_message = fake_ollama.chats()[1]["messages"][-1]["content"]
    assert "'phase-002' depends on unknown phase id 'phase-009'" in error_message


async def test_cycle_twice_raises_plan_error(fake_ollama: FakeOllama, llm: LLMClient) -> None:
    cyclic = plan_text(phase("phase-001", ["phase-002"]), phase("phase-002", ["phase-001"]))
    fake_ollama.chat_answers = [cyclic, cyclic, "never asked"]
    with pytest.raises(PlanError) as caught:
        await plan_for(llm)
    message = str(caught.value)
    assert "phase-001 -> phase-002 -> phase-001" in message
    assert cyclic in message
    assert len(fake_ollama.chats()) == 2


async def test_long_answer_is_truncated_in_plan_error(
    fake_ollama: FakeOllama, llm: LLMClient
) -> None:
    fake_ollama.chat_answers = ["x" * 5000, "y" * 5000]
    with pytest.raises(PlanError) as caught:
        await plan_for(llm)
    assert "y" * 2000 in str(caught.value) and "y" * 2001 not in str(caught.value)
    assert "3000 more characters" in str(caught.value)
