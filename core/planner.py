"""The planning agent: asks the model for a phase plan as JSON, with one repair round."""

from __future__ import annotations

import json
import re

from core.errors import PlanError
from core.llm.base import ChatRequest, TokenSink, token_limit_message
from core.llm.client import LLMClient
from core.plan import Plan, PlanValidationError, parse_plan, plan_json_schema

MAX_QUOTED_ANSWER = 2000

SYSTEM_PROMPT = """\
You are the planning agent of a software orchestrator. Split the developer's task into phases \
that executor agents will carry out one by one, each in its own git worktree of the repository.

Answer with one JSON object and nothing else, of this shape:
{example}

Rules:
- Make phases small and focused: one coherent change each (a module, a feature slice, its tests), \
so that each can be verified on its own. Use as few phases as the task needs; a small task may \
need only one.
- "id": a unique short id such as "phase-001", "phase-002", ... (letters, digits, '.', '_' \
and '-' only, at most 64 characters).
- "name": a few words; "description": what to change, in which files, and why, concrete enough \
for an engineer who has not seen the task.
- "dependencies": ids of the phases that must be finished first ([] when none). Only ids of \
phases in this plan; no cycles.
- "estimated_complexity": "low", "medium" or "high".
- "risk_level": "low" (isolated, easily reverted), "medium" (touches shared code), "high" \
(public APIs, data formats, security-relevant code) or "critical" (data loss, migrations, \
auth); a person is asked before risky phases run.
- "verification_criteria": checkable statements that prove the phase is done, e.g. \
"pytest tests/test_parser.py passes" or "the CLI prints the version with --version".
- Base the plan on the repository context given; do not invent files that contradict it.
"""

_EXAMPLE = {
    "phases": [
        {
            "id": "phase-001",
            "name": "Add the parser",
            "description": "Create src/parser.py with parse_line() ...",
            "dependencies": [],
            "estimated_complexity": "low",
            "risk_level": "low",
            "verification_criteria": ["pytest tests/test_parser.py passes"],
        },
        {
            "id": "phase-002",
            "name": "Use the parser in the CLI",
            "description": "...",
            "dependencies": ["phase-001"],
            "estimated_complexity": "medium",
            "risk_level": "medium",
            "verification_criteria": ["..."],
        },
    ]
}


# A text that holds no content: empty, only dots/ellipses/dashes, or a stock placeholder word.
_PLACEHOLDER = re.compile(r"[\s.…_\-*?<>]*|(?i:todo|tbd|placeholder|\.\.\.|<[^>]*>)")


def _placeholder(text: str) -> bool:
    return _PLACEHOLDER.fullmatch(text.strip()) is not None


def check_not_example(plan: Plan) -> None:
    """Send back a plan that copies the prompt's example or holds placeholder text (narrowly:
    a phase whose name and description equal an example phase's, or a description or
    verification criterion that is only a placeholder such as "...")."""
    copied = {(p["name"], p["description"]) for p in _EXAMPLE["phases"]}
    for number, phase in enumerate(plan.phases, start=1):
        where = f"phase {number} (id {phase.id!r})"
        if (phase.name, phase.description) in copied:
            raise PlanValidationError(
                f"{where} is copied from the example in the instructions ({phase.name!r}); "
                "plan the actual task instead, with phases about its own files and changes."
            )
        if _placeholder(phase.description):
            raise PlanValidationError(
                f"{where} has a placeholder description ({phase.description!r}); say what to "
                "change, in which files, and why."
            )
        for criterion in phase.verification_criteria:
            if _placeholder(criterion):
                raise PlanValidationError(
                    f"{where} has a placeholder verification criterion ({criterion!r}); give "
                    "checkable statements, or an empty list."
                )


def checked_plan(answer: str) -> Plan:
    """The parsed plan, refused (PlanValidationError) when it is invalid or copies the example."""
    plan = parse_plan(answer)
    check_not_example(plan)
    return plan


def system_prompt() -> str:
    """The planner's instructions, with an example of the JSON it must answer with."""
    return SYSTEM_PROMPT.format(example=json.dumps(_EXAMPLE, indent=2))


def user_prompt(task: str, context: str, lessons: str = "") -> str:
    """The task plus the retrieved repository context (file list and snippets) and the lessons
    of earlier runs on the repository (core/lessons.py), when there are any."""
    context_text = context.strip() or "(no repository context was retrieved)"
    learned = f"{lessons.strip()}\n\n" if lessons.strip() else ""
    return (
        f"Task:\n{task.strip()}\n\n"
        f"Repository context (file list and relevant snippets):\n{context_text}\n\n"
        f"{learned}Answer with the JSON plan only."
    )


def repair_prompt(error: PlanValidationError) -> str:
    """The message that sends a validation error back to the model for its one repair round."""
    return (
        f"Your answer is not a valid plan: {error}\n"
        "Fix exactly this problem and answer again with the complete corrected JSON plan only."
    )


def _quote(answer: str) -> str:
    if len(answer) <= MAX_QUOTED_ANSWER:
        return answer
    return answer[:MAX_QUOTED_ANSWER] + f"... [{len(answer) - MAX_QUOTED_ANSWER} more characters]"


async def make_plan(
    llm: LLMClient,
    *,
    task: str,
    model: str,
    context: str,
    run_id: str,
    temperature: float | None,
    max_tokens: int | None,
    context_window: int | None,
    on_text: TokenSink | None = None,
    lessons: str = "",
) -> tuple[Plan, str]:
    """Ask for a plan, send a validation error back once, and return the plan and raw answer."""
    messages = [
        {"role": "system", "content": system_prompt()},
        {"role": "user", "content": user_prompt(task, context, lessons)},
    ]
    schema = plan_json_schema()

    def request(msgs: list[dict[str, str]], repair: int) -> ChatRequest:
        return ChatRequest(
            role="planner",
            model=model,
            messages=msgs,
            json_schema=schema,
            temperature=temperature,
            max_tokens=max_tokens,
            context_window=context_window,
            run_id=run_id,
            phase=None,
            attempt=None,
            repair=repair,
        )

    first = await llm.chat(request(messages, 0), on_text)
    answer = first.content
    try:
        return checked_plan(answer), answer
    except PlanValidationError as error:
        if first.truncated:  # a repair round would be cut off at the same limit
            raise PlanError(
                f"The planner's answer is not a plan because "
                f"{token_limit_message(request(messages, 0), first)} ({error})"
            ) from error
        first_error = error
    repaired = messages + [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": repair_prompt(first_error)},
    ]
    second = await llm.chat(request(repaired, 1), on_text)
    answer = second.content
    try:
        return checked_plan(answer), answer
    except PlanValidationError as error:
        limit = ""
        if second.truncated:
            limit = f" ({token_limit_message(request(repaired, 1), second)})"
        raise PlanError(
            f"The planner's answer was not a valid plan after one repair round{limit}: {error}\n"
            f"First error: {first_error}\n"
            f"The model answered:\n{_quote(answer)}"
        ) from error
