"""The run view on real runs: the demo driven in the app's loop, and a run written by another
process's store (seen only through the store poll)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.paths import Paths
from core.bus import EventBus
from core.engine import Engine
from core.journal import Journal
from core.records import Category, FindingIn, PhaseStatus, RunStatus, Severity
from core.state.store import StateStore
from tests.tui.run_view_support import create_demo_run, run_screen, view_ready, wait_for
from tests.waiting import eventually
from tui.app import OrchestratorApp
from tui.modals.intervention import InterventionModal
from tui.widgets.diff_view import DiffView
from tui.widgets.findings import FindingsPane
from tui.widgets.timeline import PhaseTimeline


def _timeline_statuses(timeline: PhaseTimeline) -> dict[str, str]:
    """plan id → the status cell's text, as the user reads the table."""
    out = {}
    for row in range(timeline.row_count):
        cells = timeline.get_row_at(row)
        plan_id = _plain(cells[0]).strip("└ ").split()[0]
        out[plan_id] = _plain(cells[1]).split()[-1]
    return out


def _plain(cell: object) -> str:
    return getattr(cell, "plain", str(cell))


async def test_watch_the_demo_run_complete_in_the_app(engine: Engine, tmp_path: Path) -> None:
    run = await create_demo_run(engine, tmp_path / "demo")
    app = OrchestratorApp(engine, initial_run=run.id, start_initial="execute", auto_approve=True)
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: view_ready(app), what="the run view")
        screen = run_screen(app)
        timeline = screen.query_one(PhaseTimeline)
        # Every status the timeline is given while the run goes on (it refreshes on each event).
        shown: list[dict[str, str]] = []
        show_phases = timeline.show_phases

        def recording(phases: Any, now: Any) -> None:
            show_phases(phases, now)
            shown.append({p.plan_id: str(p.status) for p in phases})

        timeline.show_phases = recording  # type: ignore[method-assign]

        def finished() -> bool:
            return screen.run is not None and screen.run.status is RunStatus.COMPLETED

        await wait_for(pilot, finished, what="the demo run to complete", timeout=120)
        await wait_for(
            pilot,
            lambda: set(_timeline_statuses(timeline).values()) == {"completed"},
            what="every phase shown completed",
        )
        statuses = _timeline_statuses(timeline)
        assert list(statuses) == ["phase-001", "phase-002", "phase-003"]
        # The timeline followed the run live: it showed phases before they were all completed.
        assert shown and any(set(statuses.values()) != {"completed"} for statuses in shown)

        # Every stored line reached the view, once and in order (the store may still be taking
        # the run's last lines, so both sides are read again until they agree).
        async def view_has_every_stored_line() -> bool:
            stored = [r.seq for r in await engine.logs(run.id, limit=10_000)]
            return [r.seq for r in screen.live_log.records] == stored

        await eventually(
            view_has_every_stored_line,
            what="the live log to hold every stored line, in order",
            pause=lambda: pilot.pause(0.02),
        )
        assert any("phase-003" in line for line in screen.live_log.shown_lines)
        # Attempts and durations of the finished phases are shown.
        for row in range(timeline.row_count):
            cells = timeline.get_row_at(row)
            assert _plain(cells[2]).endswith("/3") and _plain(cells[3]) != "—"


async def test_diff_shows_the_selected_phase_commit(engine: Engine, tmp_path: Path) -> None:
    run = await create_demo_run(engine, tmp_path / "demo")
    await engine.execute_run(run.id, auto_approve=True)
    phases = await engine.phases(run.id)
    app = OrchestratorApp(engine, initial_run=run.id)
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: view_ready(app), what="the run view")
        await pilot.press("t", "down", "enter")
        screen = run_screen(app)
        view = screen.query_one(DiffView)
        second = phases[1]
        await wait_for(pilot, lambda: view.phase_id == second.id, what="the diff of phase-002")
        assert second.commit is not None
        assert view.diff.startswith(f"commit {second.commit}")
        assert "diff --git" in view.diff
        body = str(view.query_one("#diff-body").render())
        assert f"commit {second.commit}" in body and "diff --git" in body
        # Moving to another phase while the diff shows loads that phase's commit.
        await pilot.press("up")
        await wait_for(pilot, lambda: view.phase_id == phases[0].id, what="phase-001's diff")
        assert phases[0].commit is not None and phases[0].commit in view.diff


async def test_a_run_of_another_process_updates_live(engine: Engine, home: Path) -> None:
    """Another process writes through its own store and journal; this app's bus hears nothing, so
    only the store poll can show the change."""
    other = await StateStore.open(Paths(home).db)
    journal = Journal(other, EventBus(), flush_interval=0.05)
    await journal.start()
    try:
        run = await other.create_run("Add a health check", str(home), {})
        app = OrchestratorApp(engine, initial_run=run.id)
        async with app.run_test(size=(130, 40)) as pilot:
            await wait_for(pilot, lambda: view_ready(app), what="the run view")
            screen = run_screen(app)
            timeline = screen.query_one(PhaseTimeline)
            assert timeline.row_count == 0

            plan = [
                {"id": "phase-001", "name": "Route", "dependencies": []},
                {"id": "phase-002", "name": "Probe", "dependencies": ["phase-001"]},
            ]
            phases = await other.save_plan(run.id, plan, max_attempts=3)
            await other.update_run_status(run.id, RunStatus.EXECUTING)
            await other.update_phase_status(phases[0].id, PhaseStatus.IN_PROGRESS)
            for i in range(1500):
                journal.log(run.id, phases[0].id, "info", f"other process line {i}")
            await journal.flush()
            await wait_for(
                pilot,
                lambda: _timeline_statuses(timeline).get("phase-001") == "in_progress",
                what="the other process's phase status",
            )
            await wait_for(
                pilot,
                lambda: any("line 1499" in s for s in screen.live_log.shown_lines[-1:]),
                what="the other process's log lines",
            )
            # Bounded: the newest lines are held, the rest stays in the store.
            assert len(screen.live_log.records) <= screen.live_log.max_lines

            await other.add_findings(
                run.id,
                phases[0].id,
                None,
                [FindingIn(Category.LINT, Severity.MINOR, "ruff", "app.py:1:1: F401 unused")],
            )
            await other.update_phase_status(phases[0].id, PhaseStatus.COMPLETED, commit="a" * 40)
            await other.update_run_status(run.id, RunStatus.COMPLETED)
            await wait_for(
                pilot,
                lambda: screen.run is not None and screen.run.status is RunStatus.COMPLETED,
                what="the run completed",
            )
            assert _timeline_statuses(timeline)["phase-001"] == "completed"
            assert [f.tool for f in screen.findings] == ["ruff"]
            assert "read-only" in str(screen.query_one("#run-head").render())
    finally:
        await journal.stop()
        await other.close()


async def test_a_finding_shows_the_tool_output_and_the_attempt_report(
    engine: Engine, tmp_path: Path
) -> None:
    """The demo's phase-002 fails verification once: its finding carries the test output, and the
    attempt's saved verification report (commands, exit codes, output) shows with it."""
    run = await create_demo_run(engine, tmp_path / "demo")
    await engine.execute_run(run.id, auto_approve=True)
    findings = await engine.findings(run.id)
    assert findings, "the demo records a finding"
    app = OrchestratorApp(engine, initial_run=run.id)
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: view_ready(app), what="the run view")
        pane = run_screen(app).query_one(FindingsPane)
        await pilot.press("f", "down", "down")  # the first file, then its first finding
        await wait_for(
            pilot,
            lambda: pane.selected is not None and pane.detail_ready,
            what="the finding's detail",
        )
        detail = str(pane.query_one("#finding-detail").render())
        assert pane.selected is not None and pane.selected.message.splitlines()[0] in detail
        assert "verification report of this attempt" in detail
        assert "$ " in detail and "exit: " in detail


@pytest.mark.parametrize(
    "size", [(80, 24), (160, 45), (200, 60)], ids=["80x24", "160x45", "200x60"]
)
async def test_the_live_timeline_shows_whole_cells_while_the_app_drives_the_run(
    engine: Engine, tmp_path: Path, size: tuple[int, int]
) -> None:
    """Rows arrive pending and change as the run goes on (the last ones after the user approves
    the risky phase in the modal): the columns follow, so the statuses, commits and dependencies
    read whole on the screen at every size."""
    run = await create_demo_run(engine, tmp_path / "demo")
    app = OrchestratorApp(engine, initial_run=run.id, start_initial="execute")
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: view_ready(app), what="the run view")
        screen = run_screen(app)
        timeline = screen.query_one(PhaseTimeline)
        await wait_for(
            pilot, lambda: isinstance(app.screen, InterventionModal), what="the approval modal"
        )
        await pilot.press("a")
        await wait_for(
            pilot,
            lambda: screen.run is not None and screen.run.status is RunStatus.COMPLETED,
            what="the demo run to complete",
            timeout=120,
        )
        phases = await engine.phases(run.id)

        def shown() -> list[str]:
            return [timeline.render_line(y).text for y in range(timeline.size.height)]

        def whole() -> bool:
            lines = shown()
            return len(lines) > len(phases) and all(
                "✓ completed" in line for line in lines[1 : len(phases) + 1]
            )

        await wait_for(pilot, whole, what=f"every status shown whole; screen: {shown()}")
        lines = shown()
        assert lines[0].split() == [
            "phase",
            "status",
            "tries",
            "duration",
            "risk",
            "depends",
            "on",
            "commit",
        ]
        for phase, line in zip(phases, lines[1:], strict=False):
            assert phase.commit is not None and phase.commit[:10] in line, line
            assert phase.plan_id in line
            assert (", ".join(phase.dependencies) or "—") in line, line
            assert line.rstrip().endswith(phase.commit[:10]), line
        # The demo's phase-002 passed on its second attempt: the detail shows both attempts.
        await pilot.press("t", "down")
        await wait_for(
            pilot,
            lambda: (
                timeline.selected_phase is not None
                and timeline.selected_phase.plan_id == "phase-002"
            ),
            what="phase-002 selected",
        )
        detail = screen.query_one("#phase-detail")
        await wait_for(
            pilot,
            lambda: "#2 " in str(detail.render()),
            what="the attempts of phase-002 in its detail",
        )
        await pilot.pause()
        shown = " ".join(detail.render_line(y).text for y in range(detail.size.height))
        assert "#1 ✗ failed" in shown or "#1 failed" in shown, shown
        assert "#2 " in shown and "succeeded" in shown, shown
