"""Snapshots of the run view and each of its panes on the seed data, driven by the keyboard only.

The app opens on the seed's waiting run (five phases in several states, findings of every
severity, a pending intervention, more log lines than the live log holds); the intervention modal
shows at once and Esc sets it aside, then keys open each pane.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from config.paths import Paths
from tests.tui.run_view_support import HomeApp, close_intervention_modal, run_screen, wait_for
from tests.tui.seed import COMPLETED_RUN, MAIN_RUN, SEED_NOW, seed, ts
from tests.tui.settle import wait_settled
from tui.widgets.diff_view import DiffView
from tui.widgets.findings import FindingsPane
from tui.widgets.timeline import PhaseTimeline

SIZE = (130, 40)
PHASE_ONE = "pd0main01"  # the seed's id of MAIN_RUN's phase-001
DIFF = """commit a1b2c3d4e5f60718293a4b5c6d7e8f9012345678
Author:     Agent Orchestrator <orchestrator@localhost>
AuthorDate: Fri Nov 20 08:06:24 2026 +0000
Commit:     Agent Orchestrator <orchestrator@localhost>
CommitDate: Fri Nov 20 08:06:24 2026 +0000

    phase-001: Validate item input

    Orchestrator-Run: r5eed0main
    Orchestrator-Phase: phase-001
---
 inventory/store.py     |  9 +++++++--
 inventory/validate.py  | 21 +++++++++++++++++++++
 tests/test_store.py    | 12 ++++++++++++
 3 files changed, 40 insertions(+), 2 deletions(-)

diff --git a/inventory/store.py b/inventory/store.py
index 3b18e51..9f2c4aa 100644
--- a/inventory/store.py
+++ b/inventory/store.py
@@ -1,12 +1,17 @@
 from dataclasses import dataclass
+
+from inventory.validate import validate_item

 @dataclass
 class Item:
     sku: str
     name: str
     quantity: int

 def add_item(items: dict[str, Item], item: Item) -> None:
-    items[item.sku] = item
+    validate_item(item)
+    if item.sku in items:
+        raise ValueError(f"duplicate sku {item.sku}")
+    items[item.sku] = item
diff --git a/inventory/validate.py b/inventory/validate.py
new file mode 100644
index 0000000..5d1e0b7
--- /dev/null
+++ b/inventory/validate.py
@@ -0,0 +1,21 @@
+import re
+
+SKU = re.compile(r"^[A-Z]{3}-\\d{4}$")
+
+
+def validate_item(item) -> None:
+    if not SKU.match(item.sku):
+        raise ValueError(f"bad sku {item.sku!r}: expected ABC-1234")
+    if item.quantity < 0:
+        raise ValueError("quantity must not be negative")
"""


def _seed(home: Path) -> None:
    """The seed data plus the diff artifact of phase-001 (its repository is not on this machine,
    so the view falls back to the saved diff)."""
    db = Paths(home).db
    seed(db)
    diff_file = home / "artifacts" / MAIN_RUN / "phase-001.diff"
    diff_file.parent.mkdir(parents=True, exist_ok=True)
    diff_file.write_text(DIFF, encoding="utf-8")
    data = DIFF.encode()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO artifacts (id, run_id, phase_id, name, path, type, size, hash, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "a5eed0diff",
                MAIN_RUN,
                PHASE_ONE,
                "phase-001.diff",
                str(diff_file),
                "diff",
                len(data),
                hashlib.sha256(data).hexdigest(),
                ts(66.5),
            ),
        )


def _app(home: Path, run_id: str = MAIN_RUN) -> HomeApp:
    _seed(home)
    return HomeApp(home, initial_run=run_id, clock=lambda: SEED_NOW)


def _keys(
    *keys: str, until: Callable[[Any], bool] | None = None
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Set the intervention modal aside, press `keys`, and wait until the view has settled."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await close_intervention_modal(pilot)
        await pilot.press(*keys)
        screen = run_screen(pilot.app)
        await wait_for(pilot, lambda: not screen.live_log.busy, what="the log to settle")
        if until is not None:
            await wait_for(pilot, lambda: until(screen), what="the pane to fill")
        timeline = screen.query_one(PhaseTimeline)
        # The table measures its columns when idle after new rows; wait for that pass.
        await wait_for(
            pilot,
            lambda: not timeline._require_update_dimensions and not timeline._updated_cells,
            what="the timeline's column widths",
        )
        await wait_settled(pilot)

    return run_before


def _snap(snap_compare: Any, home: Path, keys: Sequence[str] = (), **kwargs: Any) -> None:
    app = _app(home, kwargs.pop("run_id", MAIN_RUN))
    size = kwargs.pop("size", SIZE)
    assert snap_compare(app, terminal_size=size, run_before=_keys(*keys, **kwargs))


@pytest.fixture
def snap_home(home: Path) -> Path:
    return home


def test_run_view_follows_the_log(snap_compare: Any, snap_home: Path) -> None:
    _snap(snap_compare, snap_home)


def test_run_view_log_filtered(snap_compare: Any, snap_home: Path) -> None:
    _snap(
        snap_compare,
        snap_home,
        ["slash", *"running pytest", "enter"],
        until=lambda s: s.live_log.filter_text == "running pytest" and s.live_log.has_focus,
    )


def test_run_view_log_first_lines_from_the_store(snap_compare: Any, snap_home: Path) -> None:
    _snap(snap_compare, snap_home, ["home"], until=lambda s: not s.live_log.follow)


def test_run_view_timeline_selected_phase(snap_compare: Any, snap_home: Path) -> None:
    _snap(snap_compare, snap_home, ["t", "down", "down", "down", "down"])


def test_run_view_findings_with_detail(snap_compare: Any, snap_home: Path) -> None:
    _snap(
        snap_compare,
        snap_home,
        ["f", "down", "down", "down", "down", "down", "down"],
        until=lambda s: _selected(s) == "fd0main06" and s.query_one(FindingsPane).detail_ready,
    )


def _selected(screen: Any) -> str | None:
    finding = screen.query_one(FindingsPane).selected
    return None if finding is None else finding.id


def test_run_view_findings_major_only(snap_compare: Any, snap_home: Path) -> None:
    _snap(snap_compare, snap_home, ["f", "s", "s"])


def test_run_view_diff_of_a_phase(snap_compare: Any, snap_home: Path) -> None:
    _snap(
        snap_compare,
        snap_home,
        ["t", "enter"],
        until=lambda s: s.query_one(DiffView).phase_id == PHASE_ONE,
    )


def test_run_view_of_a_finished_run(snap_compare: Any, snap_home: Path) -> None:
    _snap(snap_compare, snap_home, run_id=COMPLETED_RUN)


def test_run_view_in_a_small_terminal_keeps_the_log(snap_compare: Any, snap_home: Path) -> None:
    _snap(snap_compare, snap_home, size=(80, 24))


def test_run_view_phase_with_two_dependencies_at_80x24(snap_compare: Any, snap_home: Path) -> None:
    """phase-004 depends on two phases: the ids shorten so status and commit stay in view, and
    its detail lists them whole."""
    _snap(snap_compare, snap_home, ["t", "down", "down", "down"], size=(80, 24))


def test_run_view_phase_with_two_dependencies_at_160x45(snap_compare: Any, snap_home: Path) -> None:
    _snap(snap_compare, snap_home, ["t", "down", "down", "down"], size=(160, 45))
