"""The diff of a phase's commit: git's header, stat and patch, coloured like `git show`."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

# Lines drawn at most; a larger commit says how to see the rest.
MAX_DIFF_LINES = 4000


def diff_text(diff: str, *, max_lines: int = MAX_DIFF_LINES) -> Text:
    """A commit as `git show --stat --patch` prints it, with additions, removals and hunks coloured."""
    out = Text(no_wrap=True, overflow="ellipsis")
    lines = diff.splitlines()
    for line in lines[:max_lines]:
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith(("diff --git", "commit ")):
            style = "bold yellow"
        elif line.startswith(("index ", "new file", "deleted file", "similarity", "rename ")):
            style = "dim"
        else:
            style = ""
        out.append(line.expandtabs(4) + "\n", style=style)
    if len(lines) > max_lines:
        out.append(
            f"… {len(lines) - max_lines:,} more lines; see the phase's diff artifact\n", "dim"
        )
    return out


class DiffView(VerticalScroll):
    """The selected phase's commit; Enter on a phase of the timeline fills it."""

    DEFAULT_CSS = """
    DiffView { height: 1fr; }
    DiffView > #diff-title { background: $panel; color: $text-muted; padding: 0 1; }
    DiffView > #diff-body { width: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.phase_id: str | None = None
        self.diff: str = ""

    def compose(self) -> ComposeResult:
        yield Static("no phase selected", id="diff-title")
        yield Static(
            Text("Select a completed phase in the timeline and press Enter.", style="dim"),
            id="diff-body",
        )

    def show_message(self, title: str, message: str) -> None:
        """A phase without a diff: say why."""
        self.diff = ""
        self.query_one("#diff-title", Static).update(title)
        self.query_one("#diff-body", Static).update(Text(message, style="dim"))

    def show_diff(self, phase_id: str, title: str, diff: str) -> None:
        """Show one phase's commit."""
        self.phase_id = phase_id
        self.diff = diff
        self.query_one("#diff-title", Static).update(title)
        self.query_one("#diff-body", Static).update(diff_text(diff))
        self.scroll_home(animate=False)
