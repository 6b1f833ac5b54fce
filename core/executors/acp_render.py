"""Turns an ACP agent's `session/update` stream into readable live-log lines."""

from __future__ import annotations

from typing import Any

from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AgentThoughtChunk,
    FileEditToolCallContent,
    TextContentBlock,
    ToolCallProgress,
    ToolCallStart,
    UsageUpdate,
)

from core.executors.base import LogFn
from core.procenv import secret_redactor

_MAX_LINE = 2000
_MAX_TOOL_TEXT = 300


class LineJoiner:
    """Joins streamed text chunks into whole lines, each logged once with a prefix."""

    def __init__(self, emit: LogFn, level: str, prefix: str = "") -> None:
        self._emit = emit
        self._level = level
        self._prefix = prefix
        self._buffer = ""

    def feed(self, text: str) -> None:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._line(line)
        if len(self._buffer) > _MAX_LINE:  # a runaway line is cut rather than held forever
            self._line(self._buffer)
            self._buffer = ""

    def flush(self) -> None:
        if self._buffer.strip():
            self._line(self._buffer)
        self._buffer = ""

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self._emit(self._prefix + line, self._level)


def diff_summary(content: FileEditToolCallContent) -> str:
    """`path: +added -removed lines` (or `new file`) for a tool call's diff."""
    new = content.new_text.splitlines()
    if not content.old_text:
        return f"{content.path}: new file, {len(new)} lines"
    old = content.old_text.splitlines()
    old_set, new_set = set(old), set(new)
    added = sum(1 for line in new if line not in old_set)
    removed = sum(1 for line in old if line not in new_set)
    return f"{content.path}: +{added} -{removed} lines"


def _text_of(content: list[Any] | None) -> str:
    """The first text block of a tool call's content, on one line and capped."""
    for item in content or []:
        block = getattr(item, "content", None)
        if isinstance(block, TextContentBlock) and block.text.strip():
            text = " ".join(block.text.split())
            return text[:_MAX_TOOL_TEXT] + ("..." if len(text) > _MAX_TOOL_TEXT else "")
    return ""


class UpdateRenderer:
    """Keeps the state a readable log needs (open lines, tool titles) across updates."""

    def __init__(self, log: LogFn) -> None:
        redact = secret_redactor()
        self._log: LogFn = lambda line, level: log(redact(line), level)
        self.message = LineJoiner(self._log, "agent")
        self.thought = LineJoiner(self._log, "agent", "thinking: ")
        self._titles: dict[str, str] = {}
        self._kinds: dict[str, str] = {}
        self._status: dict[str, str] = {}
        self.usage: UsageUpdate | None = None  # the last usage/cost report, if any

    def flush(self) -> None:
        self.message.flush()
        self.thought.flush()

    def render(self, update: Any) -> None:
        """Log one update; unknown or uninteresting kinds (modes, commands) are skipped."""
        if isinstance(update, AgentMessageChunk):
            if isinstance(update.content, TextContentBlock):
                self.thought.flush()
                self.message.feed(update.content.text)
            return
        if isinstance(update, AgentThoughtChunk):
            if isinstance(update.content, TextContentBlock):
                self.thought.feed(update.content.text)
            return
        if isinstance(update, UsageUpdate):
            self.usage = update
            return
        self.flush()
        if isinstance(update, ToolCallStart):
            self._tool_start(update)
        elif isinstance(update, ToolCallProgress):
            self._tool_progress(update)
        elif isinstance(update, AgentPlanUpdate):
            self._log("plan:", "agent")
            for entry in update.entries:
                self._log(f"  [{entry.status}] {entry.content}", "agent")

    def remember(self, call_id: str, title: str | None) -> None:
        """Keep a tool call's title seen outside an update (in a permission request)."""
        if title and call_id not in self._titles:
            self._titles[call_id] = title

    def kind_of(self, call_id: str) -> str | None:
        """The tool kind an earlier update gave this tool call, if any."""
        return self._kinds.get(call_id)

    def _tool_start(self, update: ToolCallStart) -> None:
        self._titles[update.tool_call_id] = update.title
        if update.kind:
            self._kinds[update.tool_call_id] = update.kind
        status = update.status or "pending"
        self._status[update.tool_call_id] = status
        where = ", ".join(loc.path for loc in update.locations or [])
        self._log(
            f"tool: {update.title} [{update.kind or 'other'}] {status}"
            + (f" ({where})" if where else ""),
            "agent",
        )
        self._diffs(update.content)

    def _tool_progress(self, update: ToolCallProgress) -> None:
        call = update.tool_call_id
        if update.title:
            self._titles[call] = update.title
        if update.kind:
            self._kinds[call] = update.kind
        title = self._titles.get(call, call)
        if update.status and update.status != self._status.get(call):
            self._status[call] = update.status
            text = _text_of(update.content) if update.status in ("completed", "failed") else ""
            level = "warning" if update.status == "failed" else "agent"
            self._log(f"tool: {title} {update.status}" + (f": {text}" if text else ""), level)
        self._diffs(update.content)

    def _diffs(self, content: list[Any] | None) -> None:
        for item in content or []:
            if isinstance(item, FileEditToolCallContent):
                self._log(f"diff: {diff_summary(item)}", "agent")
