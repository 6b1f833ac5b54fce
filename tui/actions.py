"""Run actions shared by the runs table and the run view: each asks what it needs, calls the engine,
and notifies the result; engine errors become error notifications."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import OrchestratorError
from core.records import ACTIVE_RUN_STATUSES, FINISHED_RUN_STATUSES, Run, RunStatus
from tui.modals.confirm import ConfirmModal
from tui.modals.export import ExportModal, ExportRequest

if TYPE_CHECKING:
    from tui.app import OrchestratorApp


# Which runs each action can act on, and what to say when it cannot (keys, palette and actions).
_APPLIES = {
    "resume": (
        lambda run: run.status in (RunStatus.FAILED, RunStatus.INTERRUPTED),
        "only a failed or interrupted run can be resumed",
    ),
    "cancel": (
        lambda run: run.status in ACTIVE_RUN_STATUSES or run.status is RunStatus.INTERRUPTED,
        "only a run that is going on or interrupted can be cancelled",
    ),
    "apply": (
        lambda run: run.status is RunStatus.COMPLETED,
        "only a completed run can be applied",
    ),
    "clean": (
        lambda run: run.status in FINISHED_RUN_STATUSES,
        "only a finished run can be cleaned up",
    ),
}


def applies(action: str, run: Run) -> bool:
    """Whether `action` (resume, cancel, apply, clean; others always) can happen on this run."""
    rule = _APPLIES.get(action)
    return rule is None or bool(rule[0](run))


async def _refused(app: OrchestratorApp, action: str, run_id: str) -> bool:
    """True (after saying why) when the run's current state rules the action out."""
    try:
        run = await app.engine.get_run(run_id)
    except OrchestratorError as exc:
        _failed(app, action, exc)
        return True
    if applies(action, run):
        return False
    app.notify(f"run {run_id} is {run.status}; {_APPLIES[action][1]}", severity="warning")
    return True


def _failed(app: OrchestratorApp, what: str, exc: Exception) -> None:
    app.notify(str(exc), title=what, severity="error", timeout=10)


async def resume(app: OrchestratorApp, run_id: str) -> bool:
    """Continue an interrupted or failed run in this process; False when the engine refuses."""
    if await _refused(app, "resume", run_id):
        return False
    app.start_engine_task(run_id, resume=True)
    app.notify(f"resuming run {run_id}")
    return True


async def cancel(app: OrchestratorApp, run_id: str) -> bool:
    """Cancel a run after a confirm; the process running it stops within a heartbeat."""
    if await _refused(app, "cancel", run_id):
        return False
    ok = await app.push_screen_wait(
        ConfirmModal(
            f"Cancel run {run_id}?",
            "The run stops at its next checkpoint and cannot be resumed.",
            confirm_label="Cancel run",
        )
    )
    if not ok:
        return False
    app.cancelling.add(run_id)
    try:
        run = await app.engine.cancel_run(run_id)
    except OrchestratorError as exc:
        _failed(app, "cancel", exc)
        return False
    app.notify(f"run {run_id} {'cancelled' if run.status == 'cancelled' else 'cancel requested'}")
    return True


async def export(app: OrchestratorApp, run_id: str) -> Path | None:
    """Write the run summary as markdown or JSON to a file the user names; returns the file."""
    request: ExportRequest | None = await app.push_screen_wait(
        ExportModal(run_id, folder=app.work_dir)
    )
    if request is None:
        return None
    out = request.path.expanduser()
    if not out.parent.is_dir():
        app.notify(
            f"folder {out.parent} does not exist; pick another file",
            title="export",
            severity="error",
        )
        return None
    try:
        text = await app.engine.export(run_id, request.fmt)
        await _write_text(out, text)
    except (OrchestratorError, OSError) as exc:
        _failed(app, "export", exc)
        return None
    app.notify(f"wrote {out}")
    return out


async def apply(app: OrchestratorApp, run_id: str) -> str | None:
    """Merge a completed run's branch into the repository's current branch, after a confirm."""
    if await _refused(app, "apply", run_id):
        return None
    ok = await app.push_screen_wait(
        ConfirmModal(
            f"Apply run {run_id}?",
            "Its branch is merged into the repository's current branch.",
            confirm_label="Apply",
        )
    )
    if not ok:
        return None
    try:
        head = await app.engine.apply_run(run_id)
    except OrchestratorError as exc:
        _failed(app, "apply", exc)
        return None
    app.notify(f"applied run {run_id}; the branch is now at {head[:10]}")
    return head


async def clean(app: OrchestratorApp, run_id: str) -> bool:
    """Remove a finished run's worktrees and branches (its history stays), after a confirm."""
    if await _refused(app, "clean", run_id):
        return False
    ok = await app.push_screen_wait(
        ConfirmModal(
            f"Clean up run {run_id}?",
            "Its worktrees and branch are removed; its history, log and findings stay.",
            confirm_label="Clean up",
        )
    )
    if not ok:
        return False
    try:
        cleaned = await app.engine.clean(run_id)
    except OrchestratorError as exc:
        _failed(app, "clean", exc)
        return False
    app.notify(f"cleaned run {run_id}" if cleaned else f"run {run_id} had nothing to clean")
    return True


async def _write_text(path: Path, text: str) -> None:
    """Write the file off the event loop."""
    import asyncio

    await asyncio.to_thread(path.write_text, text, encoding="utf-8")
