"""Lessons benchmark: replayed demo runs on one repository, and the Lessons section each prompt got.

Usage: python bench/lessons.py [--runs 3] [--budget 400]

A temporary home and one copy of the demo repository; each run replays the shipped cassette
(`--record` keeps every request), with `lessons.max_tokens` set to `--budget`. For each run it
prints the lessons stored before it, and for each recorded request the Lessons section's size in
tokens (core.llm.base.estimate_tokens, the prompt's own estimate) against the budget. The first
run has nothing to learn from; from the second on, phase-002's failed first attempt is a lesson.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.lessons import SECTION_TITLE
from core.llm.base import estimate_tokens


def _cli(home: Path, budget: int, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR")}
    env.update(
        {
            "ORCHESTRATOR_HOME": str(home),
            "ORCHESTRATOR__MODELS__EMBEDDER": "hashing-256",
            "ORCHESTRATOR__LESSONS__MAX_TOKENS": str(budget),
            "ORCHESTRATOR_SEARCH_DAEMON": "off",
            "PYTHONPATH": str(ROOT),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lessons-") as scratch:
        home, tmp = Path(scratch) / "home", Path(scratch)
        repo = prepare_demo_repo(tmp / "repos")
        for number in range(1, args.runs + 1):
            known = json.loads(_cli(home, args.budget, "lessons", "--json"))
            record = tmp / f"run-{number}.jsonl"
            out = _cli(home, args.budget, "run", DEMO_TASK, "--repo", str(repo), "--provider",
                       "replay", "--replay", str(cassette_path()), "--record", str(record),
                       "--headless", "--yes")  # fmt: skip
            run_id = out.split()[1]
            print(f"run {number} ({run_id}): {len(known)} lesson(s) stored before it")
            for line in record.read_text().splitlines():
                entry = json.loads(line)
                if entry.get("started"):  # the call's start; its entry follows with the request
                    continue
                user = [m["content"] for m in entry["request"]["messages"] if m["role"] == "user"]
                text = user[-1]
                start = text.find(SECTION_TITLE)
                section = "" if start < 0 else text[start:].split("\n\n")[0]
                lessons = sum(1 for row in section.splitlines() if row.startswith("- "))
                where = entry["phase"] or "planner"
                attempt = f" attempt {entry['attempt']}" if entry["attempt"] else ""
                print(
                    f"  {where}{attempt}: lessons section {estimate_tokens(section) if section else 0}"
                    f" tokens of {args.budget} ({lessons} lesson(s))"
                )


if __name__ == "__main__":
    main()
