"""The phase timeline: dependency order, depth, and the cells the user reads."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import App, ComposeResult

from core.records import Phase, PhaseStatus
from tui.widgets.timeline import PhaseTimeline, dependency_order

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _phase(seq: int, deps: list[str], status: str = "pending", **kw: object) -> Phase:
    return Phase(
        id=f"id{seq}",
        run_id="r1",
        plan_id=f"phase-{seq:03d}",
        seq=seq,
        name=f"phase {seq}",
        description="",
        status=PhaseStatus(status),
        dependencies=deps,
        estimated_complexity="low",
        risk_level="low",
        verification_criteria=[],
        attempts=int(kw.get("attempts", 0)),  # type: ignore[call-overload]
        max_attempts=3,
        started_at=kw.get("started_at"),  # type: ignore[arg-type]
        completed_at=kw.get("completed_at"),  # type: ignore[arg-type]
        commit=kw.get("commit"),  # type: ignore[arg-type]
    )


def test_dependency_order_puts_every_phase_after_what_it_needs() -> None:
    # Plan order differs from dependency order: phase 1 needs phase 3.
    phases = [
        _phase(1, ["phase-003"]),
        _phase(2, []),
        _phase(3, ["phase-002"]),
        _phase(4, ["phase-001", "phase-002", "phase-404"]),  # an unknown id is ignored
    ]
    order = [(p.plan_id, depth) for p, depth in dependency_order(phases)]
    assert order == [("phase-002", 0), ("phase-003", 1), ("phase-001", 2), ("phase-004", 3)]


def test_a_cycle_does_not_lose_phases() -> None:
    phases = [_phase(1, ["phase-002"]), _phase(2, ["phase-001"]), _phase(3, [])]
    assert [p.plan_id for p, _ in dependency_order(phases)] == [
        "phase-003",
        "phase-001",
        "phase-002",
    ]


class TimelineApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PhaseTimeline()


async def test_rows_show_status_attempts_duration_and_dependencies() -> None:
    app = TimelineApp()
    # Wide enough for whole names (a narrow table shortens them: see the live timeline tests).
    async with app.run_test(size=(120, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        phases = [
            _phase(
                1,
                [],
                "completed",
                attempts=2,
                started_at="2026-11-20T08:00:00.000000Z",
                completed_at="2026-11-20T08:05:30.000000Z",
                commit="a1b2c3d4e5f6",
            ),
            _phase(2, ["phase-001"], "in_progress", attempts=1, started_at="2026-11-20T08:50:00Z"),
        ]
        timeline.show_phases(phases, NOW)
        await pilot.pause()
        rows = [[getattr(c, "plain", str(c)) for c in timeline.get_row_at(i)] for i in range(2)]
        assert rows[0] == [
            "phase-001 phase 1",
            "✓ completed",
            "2/3",
            "5m 30s",
            "low",
            "—",
            "a1b2c3d4e5",
        ]
        assert rows[1][0] == "└ phase-002 phase 2" and rows[1][1] == "▶ in_progress"
        assert rows[1][3] == "10m 00s" and rows[1][5] == "phase-001"

        # A later read keeps the cursor on the same phase and updates the changed cells only.
        await pilot.press("down")
        assert timeline.selected_phase is not None and timeline.selected_phase.id == "id2"
        timeline.show_phases(phases, NOW.replace(minute=1))
        await pilot.pause()
        assert timeline.get_row_at(1)[3] == "11m 00s"
        assert timeline.selected_phase.id == "id2"
