"""The phase timeline: dependency order, depth, and the cells the user reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from textual.app import App, ComposeResult

from core.records import Phase, PhaseStatus
from tests.waiting import eventually
from tui.widgets.timeline import PhaseTimeline, dependency_order, fit_dependencies, id_prefix

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


def test_dependencies_are_shortened_to_the_room_they_get() -> None:
    deps = ["phase-002", "phase-003", "phase-004"]
    assert fit_dependencies(deps, 40, "phase-") == "phase-002, phase-003, phase-004"
    assert fit_dependencies(deps, 15, "phase-") == "002, 003, 004"
    assert fit_dependencies(deps, 8, "phase-") == "002 +2"
    assert fit_dependencies(deps, 4, "phase-") == "002…"
    assert fit_dependencies([], 4, "phase-") == "—"
    assert id_prefix(["phase-001", "phase-002"]) == "phase-"
    assert id_prefix(["setup", "api"]) == ""


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
async def test_status_and_commit_stay_in_view_however_many_dependencies(
    size: tuple[int, int],
) -> None:
    app = TimelineApp()
    async with app.run_test(size=size) as pilot:
        timeline = app.query_one(PhaseTimeline)
        done = {"commit": "a1b2c3d4e5f6", "attempts": 1, "started_at": "2026-11-20T08:00:00Z"}
        phases = [
            _phase(1, [], "completed", **done),
            _phase(2, ["phase-001"], "in_progress", attempts=1, started_at="2026-11-20T08:00:00Z"),
            _phase(3, ["phase-001"], "completed", **done),
            _phase(4, ["phase-001", "phase-002", "phase-003"], "completed", **done),
        ]
        phases = [replace(p, name="a phase name long enough to be cut somewhere") for p in phases]
        timeline.show_phases(phases, NOW)

        def lines() -> list[str]:
            return [timeline.render_line(y).text.rstrip() for y in range(timeline.size.height)]

        def laid_out() -> bool:
            measured = not timeline._require_update_dimensions and not timeline._updated_cells
            return measured and len(lines()) == len(phases) + 1

        await eventually(laid_out, what="the timeline's rows and widths", pause=pilot.pause)
        await pilot.pause()
        shown = lines()
        assert shown[0].split()[-1] == "commit", shown
        assert "▶ in_progress" in shown[2], shown
        for line in (shown[1], shown[3], shown[4]):
            assert line.endswith("a1b2c3d4e5"), shown
        assert timeline.virtual_size.width <= timeline.scrollable_content_region.width, shown
        if size[0] >= 160:  # room for every id whole
            assert "depends on" in shown[0]
            assert "phase-001, phase-002, phase-003" in shown[4], shown
        else:
            assert " 001 +2 " in shown[4], shown


async def test_a_header_drawn_before_the_table_goes_idle_has_the_rows_widths() -> None:
    """A busy machine paints between adding rows and the table's idle measuring: the header
    drawn then is cached, so it must already have the widths the rows get."""
    app = TimelineApp()
    async with app.run_test(size=(160, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        done = {"commit": "a1b2c3d4e5f6", "attempts": 1, "started_at": "2026-11-20T08:00:00Z"}
        timeline.show_phases([_phase(1, [], "completed", **done), _phase(2, ["phase-001"])], NOW)
        for when in ("before the table went idle", "after"):
            header, first = timeline.render_line(0).text, timeline.render_line(1).text
            for label, cell in (("status", "✓ completed"), ("commit", "a1b2c3d4e5")):
                assert header.index(label) == first.index(cell), f"{when}: {header!r} / {first!r}"
            await pilot.pause()
