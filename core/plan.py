"""The plan a planner produces: phase models, the JSON schema sent to the model, and validation."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import PlanValidationError

# Plan ids become parts of branch names and file names, so they are checked, never trusted.
PLAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Names the orchestrator itself uses beside phase folders (the run's worktree, baseline reports).
RESERVED_PLAN_IDS = frozenset({"run", "baseline"})
PLAN_ID_RULE = (
    "A phase id is 1 to 64 letters, digits, '.', '_' or '-', starts with a letter or digit, "
    "holds no '..' and does not end with '.' or '.lock', for example 'phase-001'."
)


def _shown(value: str, limit: int = 40) -> str:
    """An id quoted for a message, shortened when the model sent something long."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def plan_id_problem(plan_id: str) -> str | None:
    """Why a plan id cannot name a phase (branches and file names are made from it), or None."""
    if not PLAN_ID.fullmatch(plan_id):
        return f"{_shown(plan_id)} is not a valid id"
    if ".." in plan_id or plan_id.endswith((".", ".lock")):
        return f"{_shown(plan_id)} is not a valid id (git branch names refuse it)"
    if plan_id.lower() in RESERVED_PLAN_IDS:
        return f"{_shown(plan_id)} is reserved by the orchestrator"
    return None


class PlanPhase(BaseModel):
    """One phase of a plan: a small focused unit of work with its dependencies and checks."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    name: str
    description: str
    dependencies: list[str] = Field(default_factory=list)
    estimated_complexity: Literal["low", "medium", "high"] = "medium"
    risk_level: Literal["low", "medium", "high", "critical"] = "low"
    verification_criteria: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """An ordered list of phases forming a dependency graph without cycles."""

    model_config = ConfigDict(extra="ignore")

    phases: list[PlanPhase] = Field(min_length=1)


def plan_json_schema() -> dict[str, Any]:
    """A self-contained JSON schema (no $ref, every field required) for Ollama's `format`."""
    phase = PlanPhase.model_json_schema()
    properties = {name: _clean(spec) for name, spec in phase["properties"].items()}
    return {
        "type": "object",
        "properties": {
            "phases": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": properties,
                    "required": list(properties),
                },
            }
        },
        "required": ["phases"],
    }


def _clean(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("title", "default")}


_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)


def _extract_json(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        raise PlanValidationError("The answer is empty; answer with the JSON plan.")
    fenced = _FENCE.search(stripped)
    candidates = [stripped] + ([fenced.group(1)] if fenced is not None else [])
    problem: json.JSONDecodeError | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as error:
            problem = error  # the fenced part, when there is one, gives the useful position
    assert problem is not None
    raise PlanValidationError(
        f"The answer is not valid JSON: {problem.msg} at line {problem.lineno} column "
        f'{problem.colno}. Answer with one JSON object {{"phases": [...]}} and nothing else.'
    )


def _describe_schema_errors(error: ValidationError, data: Any) -> str:
    phases = data.get("phases") if isinstance(data, dict) else None
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        where = "the plan"
        if len(loc) >= 2 and loc[0] == "phases" and isinstance(loc[1], int):
            index = loc[1]
            phase_id = None
            if isinstance(phases, list) and index < len(phases) and isinstance(phases[index], dict):
                phase_id = phases[index].get("id")
            where = f"phase {index + 1}" + (f" (id {phase_id!r})" if phase_id else "")
            loc = loc[2:]
        field = ".".join(str(part) for part in loc)
        lines.append(f"{where}" + (f" field '{field}'" if field else "") + f": {item['msg']}")
    return "The plan does not match the schema: " + "; ".join(lines)


def _find_cycle(plan: Plan) -> list[str] | None:
    graph = {p.id: p.dependencies for p in plan.phases}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep in graph and dep not in state:
                found = visit(dep)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for phase in plan.phases:
        if phase.id not in state:
            found = visit(phase.id)
            if found is not None:
                return found
    return None


def check_plan(plan: Plan) -> None:
    """Raise PlanValidationError for invalid or duplicate ids, unknown dependencies or cycles."""
    bad = [
        f"phase {number}: {problem}"
        for number, phase in enumerate(plan.phases, start=1)
        if (problem := plan_id_problem(phase.id)) is not None
    ]
    if bad:
        raise PlanValidationError("; ".join(bad) + ". " + PLAN_ID_RULE)
    seen: dict[str, int] = {}
    folded: dict[str, int] = {}  # ids that differ only in case name one file on some systems
    for number, phase in enumerate(plan.phases, start=1):
        first = folded.get(phase.id.lower())
        if first is not None:
            raise PlanValidationError(
                f"Duplicate phase id {phase.id!r} (phases {first} and {number}); "
                "every phase needs a unique id (ids that differ only in case count as the same)."
            )
        seen[phase.id] = folded[phase.id.lower()] = number
    unknown = [
        f"phase {phase.id!r} depends on unknown phase id {_shown(dep)}"
        for phase in plan.phases
        for dep in phase.dependencies
        if dep not in seen
    ]
    if unknown:
        raise PlanValidationError(
            "; ".join(unknown) + f". Dependencies must be ids of phases in the plan: "
            f"{', '.join(seen)}."
        )
    cycle = _find_cycle(plan)
    if cycle is not None:
        raise PlanValidationError(
            f"The dependencies form a cycle: {' -> '.join(cycle)}. "
            "Dependencies must form a graph without cycles."
        )


def parse_plan(text: str) -> Plan:
    """Parse and validate a planner answer (a ```json fence is tolerated)."""
    data = _extract_json(text)
    if isinstance(data, list):
        data = {"phases": data}
    try:
        plan = Plan.model_validate(data)
    except ValidationError as error:
        raise PlanValidationError(_describe_schema_errors(error, data)) from None
    check_plan(plan)
    return plan


def topological_order(plan: Plan) -> list[str]:
    """Phase ids with every phase after its dependencies, otherwise in the plan's own order."""
    order_index = {p.id: i for i, p in enumerate(plan.phases)}
    remaining = {p.id: {d for d in p.dependencies if d in order_index} for p in plan.phases}
    order: list[str] = []
    while remaining:
        ready = [pid for pid, deps in remaining.items() if not deps]
        if not ready:
            raise PlanValidationError(
                f"The dependencies form a cycle among: {', '.join(sorted(remaining))}"
            )
        first = min(ready, key=order_index.__getitem__)
        order.append(first)
        del remaining[first]
        for deps in remaining.values():
            deps.discard(first)
    return order
