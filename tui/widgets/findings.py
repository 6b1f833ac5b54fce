"""The findings pane: a run's findings grouped by file, a severity filter, and the detail of one
finding with the tool's output and, when it was saved, the attempt's verification report."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from core.errors import OrchestratorError
from core.records import Finding, Phase
from tui.format import local_time

# Most severe first; issue 4 adds critical and info, so both are known here already.
SEVERITY_ORDER = ("critical", "major", "medium", "minor", "info")
SEVERITY_STYLES = {
    "critical": "bold white on red",
    "major": "bold red",
    "medium": "yellow",
    "minor": "cyan",
    "info": "dim",
}
OPEN_STATUSES = frozenset({"new", "open"})
NO_FILE = "(no file)"
_EXITED = re.compile(r"\bexited (with )?(code )?-?\d+\b")


def severity_rank(severity: str) -> int:
    """0 for the most severe; unknown severities rank after every known one."""
    try:
        return SEVERITY_ORDER.index(severity.lower())
    except ValueError:
        return len(SEVERITY_ORDER)


def severity_counts(findings: Sequence[Finding], *, open_only: bool = True) -> dict[str, int]:
    """How many findings of each severity (open ones by default), most severe first."""
    counts: dict[str, int] = {}
    for f in sorted(findings, key=lambda f: severity_rank(f.severity)):
        if not open_only or str(f.status) in OPEN_STATUSES:
            counts[f.severity] = counts.get(f.severity, 0) + 1
    return counts


def summary_line(message: str) -> str:
    """The line of a tool's output that says most: the first one that is not "CMD exited N"."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    for line in lines:
        if not _EXITED.search(line):
            return line
    return lines[0] if lines else ""


class FindingsTree(Tree[Finding | None]):
    """Files, each with its findings, most severe first."""

    DEFAULT_CSS = """
    FindingsTree { height: 1fr; overflow-x: hidden; }
    """


class FindingsPane(Horizontal):
    """Findings by file on the left, the highlighted finding's detail on the right."""

    DEFAULT_CSS = """
    FindingsPane { height: 1fr; }
    FindingsPane > #findings-left { width: 1fr; min-width: 40; }
    FindingsPane #findings-status { height: 1; color: $text-muted; background: $panel; padding: 0 1; }
    FindingsPane > VerticalScroll { width: 1fr; border-left: solid $panel-lighten-2; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_severity", "Severity filter"),
        Binding("o", "toggle_open", "Open/all"),
    ]

    def __init__(
        self,
        fetch_report: Callable[[str], Awaitable[str | None]] | None = None,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.fetch_report = fetch_report
        self.findings: list[Finding] = []
        self.phase_labels: dict[str, str] = {}
        self.min_severity: str | None = None  # None: every severity
        self.open_only = False
        self.selected: Finding | None = None
        self._signature: tuple[object, ...] = ()
        self._file_nodes: dict[str, TreeNode[Finding | None]] = {}
        self.detail_ready = True  # False while the selected finding's report is being read

    def compose(self) -> ComposeResult:
        with Vertical(id="findings-left"):
            yield Static(id="findings-status")
            tree = FindingsTree("findings", id="findings-tree")
            tree.show_root = False
            yield tree
        with VerticalScroll(id="finding-detail-scroll"):
            yield Static("Select a finding to see the tool's output.", id="finding-detail")

    @property
    def findings_tree(self) -> FindingsTree:
        return self.query_one(FindingsTree)

    @property
    def shown_findings(self) -> list[Finding]:
        """The findings that pass the severity and status filters."""
        limit = (
            len(SEVERITY_ORDER) if self.min_severity is None else severity_rank(self.min_severity)
        )
        return [
            f
            for f in self.findings
            if severity_rank(f.severity) <= limit
            and (not self.open_only or str(f.status) in OPEN_STATUSES)
        ]

    @property
    def filter_label(self) -> str:
        severity = "all severities" if self.min_severity is None else f"{self.min_severity}+"
        return f"{severity}, {'open only' if self.open_only else 'every status'}"

    def show_findings(self, findings: Sequence[Finding], phases: Sequence[Phase] = ()) -> None:
        """Show these findings (a refresh keeps the filter, the open files and the selection)."""
        if phases:
            self.phase_labels = {p.id: p.plan_id for p in phases}
        self.findings = list(findings)
        self._rebuild()

    def _rebuild(self, *, force: bool = False) -> None:
        shown = self.shown_findings
        signature = (self.min_severity, self.open_only, tuple((f.id, f.status) for f in shown))
        if signature == self._signature and not force:
            return
        self._signature = signature
        tree = self.findings_tree
        keep = self.selected.id if self.selected else None
        collapsed = {path for path, n in self._file_nodes.items() if not n.is_expanded}
        self._file_nodes = {}
        tree.clear()
        total = len(self.findings)
        self.query_one("#findings-status", Static).update(
            f"{len(shown)} of {total} · {self.filter_label} · s severity · o open/all"
        )
        groups: dict[str, list[Finding]] = {}
        for f in shown:
            groups.setdefault(f.path or NO_FILE, []).append(f)
        target: TreeNode[Finding | None] | None = None
        for path in sorted(groups, key=lambda p: (p == NO_FILE, p)):
            items = sorted(groups[path], key=lambda f: (severity_rank(f.severity), f.line or 0))
            worst = items[0].severity
            label = Text(path, style="bold")
            label.append(f" ({len(items)})", style=SEVERITY_STYLES.get(worst, ""))
            node = tree.root.add(label, data=None, expand=path not in collapsed)
            self._file_nodes[path] = node
            for f in items:
                leaf = node.add_leaf(self._leaf_label(f), data=f)
                if f.id == keep:
                    target = leaf
        if not shown:
            tree.root.add_leaf(
                Text(
                    "no findings" if not self.findings else f"no findings at {self.filter_label}",
                    style="dim",
                )
            )
            self._show_detail(None)
        if target is not None:
            tree.move_cursor(target)
        elif self.selected is not None and self.selected.id not in {f.id for f in shown}:
            self._show_detail(None)

    def _leaf_label(self, f: Finding) -> Text:
        text = Text()
        text.append(f"{f.severity:<8}", style=SEVERITY_STYLES.get(f.severity, ""))
        text.append(f"L{f.line:<5} " if f.line is not None else "       ", style="dim")
        text.append(f"{f.category}/{f.tool} ", style="dim")
        text.append(summary_line(f.message)[:80])
        if str(f.status) not in OPEN_STATUSES:
            text.append(f"  [{f.status}]", style="dim italic")
        return text

    @on(Tree.NodeHighlighted, "#findings-tree")
    def _highlighted(self, event: Tree.NodeHighlighted[Finding | None]) -> None:
        event.stop()
        finding = event.node.data
        if finding is not None:
            self._show_detail(finding)

    def _show_detail(self, finding: Finding | None) -> None:
        self.selected = finding
        detail = self.query_one("#finding-detail", Static)
        if finding is None:
            detail.update(Text("Select a finding to see the tool's output.", style="dim"))
            return
        detail.update(self._detail(finding, None))
        self.detail_ready = self.fetch_report is None or not finding.execution_id
        if not self.detail_ready:
            self._load_report(finding)

    @work(group="finding-report", exclusive=True, exit_on_error=False)
    async def _load_report(self, finding: Finding) -> None:
        assert self.fetch_report is not None and finding.execution_id is not None
        try:
            report = await self.fetch_report(finding.execution_id)
        except OrchestratorError as exc:  # e.g. the bucket holding it cannot be reached
            report = f"(the report cannot be read: {exc})"
        if self.selected is not None and self.selected.id == finding.id:
            if report:
                self.query_one("#finding-detail", Static).update(self._detail(finding, report))
            self.detail_ready = True

    def _detail(self, f: Finding, report: str | None) -> Text:
        text = Text()
        text.append(f" {f.severity} ", style=SEVERITY_STYLES.get(f.severity, "reverse"))
        text.append(f"  {f.category} · {f.tool}" + (f" · {f.rule}" if f.rule else ""))
        text.append(f"  [{f.status}]\n", style="dim")
        if f.location:
            column = f":{f.column}" if f.column is not None and f.line is not None else ""
            text.append(f.location + column + "\n", style="bold")
        phase = self.phase_labels.get(f.phase_id or "", f.phase_id or "run")
        text.append(f"phase {phase} · recorded {local_time(f.created_at)}", style="dim")
        if f.resolved_at:
            text.append(f" · resolved {local_time(f.resolved_at)}", style="dim")
        text.append("\n\ntool output\n", style="bold underline")
        text.append(f.message.rstrip() + "\n")
        if report:
            text.append("\nverification report of this attempt\n", style="bold underline")
            text.append(report.rstrip() + "\n")
        return text

    def action_cycle_severity(self) -> None:
        """All → critical+ → major+ → medium+ → minor+ → all, limited to severities present."""
        present = sorted({f.severity for f in self.findings}, key=severity_rank)
        steps: list[str | None] = [None, *present[:-1]] if len(present) > 1 else [None]
        index = steps.index(self.min_severity) if self.min_severity in steps else 0
        self.min_severity = steps[(index - 1) % len(steps)] if len(steps) > 1 else None
        self._rebuild(force=True)

    def action_toggle_open(self) -> None:
        self.open_only = not self.open_only
        self._rebuild(force=True)
