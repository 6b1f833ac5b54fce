"""Builders for replay cassettes used by engine tests (the same JSONL format `--record` writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.llm.replay import cassette_lines


def phase(
    pid: str, deps: list[str] | None = None, risk: str = "low", name: str | None = None
) -> dict[str, Any]:
    return {
        "id": pid,
        "name": name or f"Work {pid}",
        "description": f"Do the work of {pid}",
        "dependencies": deps or [],
        "estimated_complexity": "low",
        "risk_level": risk,
        "verification_criteria": ["files exist"],
    }


def new_file(path: str, text: str) -> str:
    """A SEARCH/REPLACE block that creates path with text."""
    return f"{path}\n```\n<<<<<<< SEARCH\n=======\n{text.rstrip(chr(10))}\n>>>>>>> REPLACE\n```\n"


def replace(path: str, search: str, repl: str) -> str:
    return f"{path}\n```\n<<<<<<< SEARCH\n{search.rstrip(chr(10))}\n=======\n{repl.rstrip(chr(10))}\n>>>>>>> REPLACE\n```\n"


def write_cassette(
    path: Path, phases: list[dict[str, Any]], answers: dict[tuple[str, int], str]
) -> Path:
    """A cassette with the plan and one executor answer per (plan id, attempt)."""
    lines = [
        {
            "role": "planner",
            "phase": None,
            "attempt": None,
            "repair": 0,
            "request": None,
            "response": {
                "content": json.dumps({"phases": phases}),
                "prompt_tokens": 100,
                "completion_tokens": 50,
            },
        }
    ]
    for (pid, attempt), content in answers.items():
        lines.append(
            {
                "role": "executor",
                "phase": pid,
                "attempt": attempt,
                "repair": 0,
                "request": None,
                "response": {"content": content, "prompt_tokens": 200, "completion_tokens": 80},
            }
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def recorded(path: Path) -> list[dict[str, Any]]:
    """The entries a `--record` cassette holds (each call's answer, error or round, with the
    request of its call's started line), without the started lines themselves."""
    return [obj for _, obj in cassette_lines(path) if not obj.get("started")]
