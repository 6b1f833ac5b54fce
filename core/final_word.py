"""The final word of a run, computed once from the stored run: what happened, what to do next and
the exit code. `--headless` output, the app's "run stopped" modal and the CLI's exit code all
come from `final_word`, so they never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from core.records import Run, RunStatus


@dataclass(frozen=True)
class FinalWord:
    """A stopped run's last message, the next step (None when there is none) and exit code."""

    status: RunStatus
    message: str
    next_step: str | None
    exit_code: int
    resumable: bool

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.COMPLETED


def final_word(run: Run) -> FinalWord:
    """What a person reads when the run `run` (as stored) stopped."""
    outcome = run.metadata.get("outcome") or {}
    status = run.status
    if status is RunStatus.COMPLETED:
        return FinalWord(
            status,
            f"run {run.id} completed on branch {run.branch}",
            f"see `orchestrator show {run.id}`, then `orchestrator apply {run.id}`",
            0,
            False,
        )
    message = f"run {run.id} {status}" + (f": {run.error}" if run.error else "")
    exit_code = int(outcome.get("exit_code") or 1)
    if status is RunStatus.CANCELLED:
        return FinalWord(
            status,
            message,
            "a cancelled run cannot be resumed; start a new run if you still want it",
            exit_code,
            False,
        )
    if status in (RunStatus.INTERRUPTED, RunStatus.FAILED):
        resumable = bool(outcome.get("resumable", True))
        if resumable:
            step = f"resume it with: orchestrator resume {run.id}"
        else:
            step = (
                "resume cannot fix this; fix the cause named above (the task, the plan or the "
                "configuration) and start a new run"
            )
        return FinalWord(status, message, step, exit_code, resumable)
    return FinalWord(  # still active: another process drives it
        status, message, f"watch it with: orchestrator show {run.id}", 1, False
    )
