"""Where a run's files live: every folder and file name built from a run id and a plan id.

Each path is checked by core.paths_safe.inside, so an id that reached the database some other
way (an old version, a hand-edited row) can never lead outside the home.
"""

from __future__ import annotations

from pathlib import Path

from config.paths import Paths
from core.errors import UnsafePathError
from core.paths_safe import inside
from core.plan import plan_id_problem


def _plan_id(plan_id: str) -> str:
    """The plan id when it is a valid one; UnsafePathError otherwise."""
    problem = plan_id_problem(plan_id)
    if problem is not None:
        raise UnsafePathError(f"refusing to name a branch or file after phase id {problem}")
    return plan_id


def run_worktree(paths: Paths, run_id: str) -> Path:
    """The run's own worktree, on the run branch, into which phases are merged."""
    return inside(paths.worktrees, run_id, "run")


def phase_worktree(paths: Paths, run_id: str, plan_id: str) -> Path:
    """The worktree a phase's attempts run in, beside the run's."""
    return inside(paths.worktrees, run_id, _plan_id(plan_id))


def phase_branch(prefix: str, run_id: str, plan_id: str) -> str:
    """The branch of a phase: the configured prefix, the run id and the plan id."""
    return f"{prefix}{run_id}--{_plan_id(plan_id)}"


def run_artifacts(paths: Paths, run_id: str) -> Path:
    """The folder of the run's artifacts (summary, run.log, diffs)."""
    return inside(paths.artifacts, run_id)


def phase_diff(paths: Paths, run_id: str, plan_id: str) -> Path:
    """The diff of a phase's commit."""
    return inside(paths.artifacts, run_id, f"{_plan_id(plan_id)}.diff")


def attempt_name(plan_id: str, attempt: int) -> str:
    """The stem of an attempt's verification reports (a folder and a .txt beside it)."""
    return f"{_plan_id(plan_id)}-attempt-{int(attempt)}"


def attempt_reports(paths: Paths, run_id: str, plan_id: str, attempt: int) -> Path:
    """The folder an attempt's verification steps write their reports to."""
    return inside(paths.reports, run_id, attempt_name(plan_id, attempt))


def attempt_report_file(paths: Paths, run_id: str, plan_id: str, attempt: int) -> Path:
    """The plain-text report of an attempt's verification."""
    return inside(paths.reports, run_id, attempt_name(plan_id, attempt) + ".txt")


def baseline_reports(paths: Paths, run_id: str) -> Path:
    """The folder of the base commit's verification reports."""
    return inside(paths.reports, run_id, "baseline")


def run_input(paths: Paths, run_id: str, name: str) -> Path:
    """A file a submitted run brought along (its replay cassette), written where a worker runs it."""
    return inside(paths.home / "inputs", run_id, name)


def run_cassette(paths: Paths, run_id: str) -> Path:
    """The cassette a submitted run with --record writes on the worker that drives it."""
    return inside(paths.home / "cassettes", f"{run_id}.jsonl")
