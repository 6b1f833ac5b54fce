"""The live log of a run: a bounded window onto the run's log lines in the store.

Only `max_lines` lines are held in memory. New lines arrive in batches (`feed`, from the bus or a
store poll) and are appended while the window reaches the newest line; scrolling to the top loads
the page before the first line from the store, scrolling to the bottom of a window that no longer
reaches the newest line loads the page after it, `home` loads the run's first page and `end`
follows the newest lines again. A filter (`/`) is applied by the store, so it searches the whole
history, and to new lines as they arrive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar, Protocol

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static
from textual.worker import Worker

from core.records import LogRecord
from core.timeutil import parse_ts


class LogFetch(Protocol):
    """Reads a page of one run's log lines from the store, oldest first (Engine.log_page)."""

    def __call__(
        self,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 500,
        contains: str | None = None,
    ) -> Awaitable[list[LogRecord]]: ...


LEVEL_STYLES = {
    "debug": "dim",
    "warning": "yellow",
    "warn": "yellow",
    "error": "bold red",
    "critical": "bold red",
    "llm": "cyan",
    "verify": "magenta",
}
_PREFIX = 9 + 8 + 10  # "HH:MM:SS " + level + phase column


def _clean(message: str) -> str:
    """One display line: newlines shown as ⏎, tabs expanded, other control characters replaced."""
    if "\n" in message:
        message = " ⏎ ".join(message.splitlines())
    return "".join(c if c >= " " else "�" for c in message.expandtabs(4))


class LiveLog(ScrollView, can_focus=True):
    """The lines themselves: a scrollable, bounded window that pages through the store."""

    DEFAULT_CSS = """
    LiveLog {
        background: $surface;
        height: 1fr;
        &:focus { background-tint: $foreground 5%; }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "toggle_follow", "Pause/follow"),
        Binding("end", "scroll_end", "Follow", show=False),
        Binding("home", "scroll_home", "First line", show=False),
    ]

    class Changed(Message):
        """The window, the follow mode or the filter changed (the pane redraws its status)."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, LiveLog.Changed)

    def __init__(
        self,
        fetch: LogFetch,
        *,
        max_lines: int = 1000,
        page: int = 400,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        if page > max_lines:
            raise ValueError("page must not be larger than max_lines")
        self.fetch = fetch
        self.max_lines = max_lines
        self.page = page
        self.records: list[LogRecord] = []
        self.follow = True
        self.filter_text = ""
        self.at_tail = True  # the window holds every matching line up to the newest one seen
        self.has_older = False  # the store has matching lines before the first one held
        self.cursor = 0  # every matching line up to this seq after the window start is held
        self.newest_seq = 0  # the newest seq seen for the run, whether held or not
        self.received = 0  # lines appended live (fed or caught up), for figures
        self.busy = False
        self.phase_labels: dict[str, str] = {}
        self._held_back: list[LogRecord] = []  # fed while a page was loading
        self._width = 0
        self._cache: LRUCache[tuple[int, int, int], Strip] = LRUCache(512)
        self._adjusting = False

    # ---- what is shown -------------------------------------------------------------------------

    @property
    def shown_lines(self) -> list[str]:
        """The held lines as plain text (what the user reads), oldest first."""
        return [self.line_text(r).plain for r in self.records]

    def line_text(self, record: LogRecord) -> Text:
        """One log line: local time, level, phase and message; filter matches highlighted."""
        try:
            clock = parse_ts(record.ts).astimezone().strftime("%H:%M:%S")
        except ValueError:
            clock = record.ts[11:19]
        level = record.level.lower()
        phase = self.phase_labels.get(record.phase_id or "", "") if record.phase_id else "run"
        text = Text.assemble(
            (clock, "dim"),
            " ",
            (f"{level[:7]:<7}", LEVEL_STYLES.get(level, "green")),
            " ",
            (f"{phase[:9]:<9}", "dim cyan"),
            " ",
            _clean(record.message),
            no_wrap=True,
        )
        if self.filter_text:
            text.highlight_words([self.filter_text], "reverse", case_sensitive=False)
        return text

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        rich_style = self.rich_style
        if index >= len(self.records):
            if index == 0 and not self.busy:
                empty = "no lines match the filter" if self.filter_text else "no log lines yet"
                text = Text(f" {empty}", style="dim italic")
                text.stylize(rich_style)
                empty_strip = Strip(list(text.render(self.app.console)), text.cell_len)
                return empty_strip.crop_extend(0, width, rich_style)
            return Strip.blank(width, rich_style)
        record = self.records[index]
        # Lines are cached as drawn (cropped to the viewport): a new batch redraws only new lines.
        key = (record.seq, scroll_x, width)
        strip = self._cache.get(key)
        if strip is None:
            line = self.line_text(record)
            line.stylize(rich_style)
            full = Strip(list(line.render(self.app.console)), line.cell_len)
            strip = full.crop_extend(scroll_x, scroll_x + width, rich_style)
            self._cache[key] = strip
        return strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def _resize(self) -> None:
        """Set the scrollable size; skip the screen-wide layout pass when only the length of an
        already scrolling window changed (new lines arrive many times a second)."""
        size = Size(self._width, len(self.records))
        old = self.virtual_size
        if size == old:
            return
        view = self.scrollable_content_region.size
        same_bars = (old.height > view.height) == (size.height > view.height) and (
            old.width > view.width
        ) == (size.width > view.width)
        if self.is_mounted and same_bars and old.height > view.height:
            self.set_reactive(ScrollView.virtual_size, size)
            self._scroll_update(size)
            self.refresh()
        else:
            self.virtual_size = size

    def set_phase_labels(self, labels: dict[str, str]) -> None:
        """Phase ids → plan ids for the phase column (they are known once the plan exists)."""
        if labels != self.phase_labels:
            self.phase_labels = dict(labels)
            self._cache.clear()
            self.refresh()

    def on_resize(self) -> None:
        if self.follow:
            self._set_scroll(self.max_scroll_y)

    def _to_end(self) -> None:
        """Scroll to the newest line once the layout knows the size (loads happen before it)."""
        if self.follow:
            self._set_scroll(self.max_scroll_y)

    def _set_scroll(self, y: float) -> None:
        """Move the viewport without it counting as the user scrolling."""
        self._adjusting = True
        try:
            self.scroll_to(y=y, animate=False, immediate=True)
        finally:
            self._adjusting = False

    def _changed(self) -> None:
        self.post_message(self.Changed())

    # ---- new lines -------------------------------------------------------------------------------

    def _matches(self, record: LogRecord) -> bool:
        return not self.filter_text or self.filter_text.lower() in record.message.lower()

    def feed(self, records: Sequence[LogRecord]) -> int:
        """New lines of the run (stored already), oldest first; repeats are ignored. Returns how
        many were appended to the window."""
        if self.busy:
            self._held_back.extend(records)
            return 0
        fresh = [r for r in records if r.seq > self.cursor]
        if not fresh:
            return 0
        self.newest_seq = max(self.newest_seq, fresh[-1].seq)
        if not self.at_tail:
            self._changed()
            return 0
        matching = [r for r in fresh if self._matches(r)]
        self.cursor = fresh[-1].seq
        if not self.follow and len(self.records) + len(matching) > self.max_lines:
            # Paused on a full window: leave it still; the lines stay in the store.
            self.at_tail = False
            self._changed()
            return 0
        self._append(matching)
        self.received += len(matching)
        return len(matching)

    def _append(self, records: Sequence[LogRecord]) -> None:
        if not records:
            return
        self.records.extend(records)
        self._width = max(self._width, _PREFIX + max(len(r.message) for r in records))
        overflow = len(self.records) - self.max_lines
        if overflow > 0:
            del self.records[:overflow]
            self.has_older = True
        self._resize()
        if self.follow:
            self._set_scroll(self.max_scroll_y)
        elif overflow > 0:
            self._set_scroll(max(0, self.scroll_y - overflow))
        self.refresh()
        self._changed()

    async def catch_up(self) -> None:
        """Read lines stored after the window from the store (runs of other processes, and lines
        the bus dropped); does nothing while the window does not reach the newest line."""
        if self.busy or not self.at_tail:
            return
        while True:
            batch = await self.fetch(
                after_seq=self.cursor, limit=self.max_lines, contains=self.filter_text or None
            )
            if not batch or self.busy:
                return
            self.feed(batch)
            if len(batch) < self.max_lines or not self.at_tail:
                return

    # ---- paging through the store -----------------------------------------------------------------

    async def _load(self, work: Callable[[], Awaitable[None]]) -> None:
        if self.busy:
            return
        self.busy = True
        self._changed()
        try:
            await work()
        finally:
            self.busy = False
            held, self._held_back = self._held_back, []
            if held:
                self.feed(held)
            self._changed()

    async def load_tail(self) -> None:
        """Show the newest page and follow new lines (also how a filter change reloads)."""

        async def work() -> None:
            contains = self.filter_text or None
            rows = await self.fetch(before_seq=None, limit=self.page, contains=contains)
            self.records = list(rows)
            self._cache.clear()
            self.has_older = len(rows) >= self.page
            self.at_tail = True
            self.cursor = rows[-1].seq if rows else self.cursor
            self.newest_seq = max(self.newest_seq, self.cursor)
            self._width = _PREFIX + max((len(r.message) for r in rows), default=0)
            self._resize()
            # The key that asked for the tail set follow; a pause pressed meanwhile wins.
            self._set_scroll(self.max_scroll_y if self.follow else 0)
            self.call_after_refresh(self._to_end)
            self.refresh()

        await self._load(work)
        await self.catch_up()

    async def load_start(self) -> None:
        """Show the run's first page, paused."""

        async def work() -> None:
            contains = self.filter_text or None
            rows = await self.fetch(after_seq=0, limit=self.page, contains=contains)
            self.records = list(rows)
            self._cache.clear()
            self.has_older = False
            self.at_tail = len(rows) < self.page
            if self.at_tail and rows:
                self.cursor = rows[-1].seq
            self._width = _PREFIX + max((len(r.message) for r in rows), default=0)
            self._resize()
            self._set_scroll(0)
            self.refresh()

        await self._load(work)

    async def load_older(self) -> None:
        """Prepend the page before the first held line, keeping the viewport on the same lines."""
        if not self.has_older:
            return

        async def work() -> None:
            first = self.records[0].seq if self.records else None
            rows = await self.fetch(
                before_seq=first, limit=self.page, contains=self.filter_text or None
            )
            self.has_older = len(rows) >= self.page
            if not rows:
                return
            self.follow = False
            self.records[:0] = rows
            self._width = max(self._width, _PREFIX + max(len(r.message) for r in rows))
            overflow = len(self.records) - self.max_lines
            if overflow > 0:
                del self.records[-overflow:]
                self.at_tail = False
            self._resize()
            self._set_scroll(self.scroll_y + len(rows))
            self.refresh()

        await self._load(work)

    async def load_newer(self) -> None:
        """Append the page after the last held line of a window that stopped short of the newest."""
        if self.at_tail:
            return

        async def work() -> None:
            last = self.records[-1].seq if self.records else self.cursor
            rows = await self.fetch(
                after_seq=last, limit=self.page, contains=self.filter_text or None
            )
            if len(rows) < self.page:
                self.at_tail = True
                self.cursor = rows[-1].seq if rows else last
            if not rows:
                return
            self.records.extend(rows)
            self._width = max(self._width, _PREFIX + max(len(r.message) for r in rows))
            overflow = len(self.records) - self.max_lines
            if overflow > 0:
                del self.records[:overflow]
                self.has_older = True
            self._resize()
            self._set_scroll(max(0, self.scroll_y - max(overflow, 0)))
            self.refresh()

        await self._load(work)
        if self.at_tail:
            await self.catch_up()

    # ---- keys and scrolling --------------------------------------------------------------------------

    def start_load(self, load: Callable[[], Coroutine[Any, Any, None]]) -> Worker[None]:
        """Run one of the load methods as the only load under way (given uncalled, so a load
        replaced before it started leaves no coroutine behind)."""
        return self.run_worker(load, group="log-load", exclusive=True)

    def set_filter(self, text: str) -> None:
        """Show only lines containing `text` (any case), searched in the whole stored history."""
        self.filter_text = text.strip()
        self._cache.clear()
        self.cursor = 0
        self.follow = True
        self.start_load(self.load_tail)

    def action_toggle_follow(self) -> None:
        if self.follow:
            self.follow = False
            self._changed()
        else:
            self.action_scroll_end()

    def action_scroll_end(self) -> None:
        """Follow the newest lines again (reloading the tail when the window fell behind)."""
        if self.at_tail:
            self.follow = True
            self._set_scroll(self.max_scroll_y)
            self._changed()
        else:
            self.follow = True
            self._changed()
            self.start_load(self.load_tail)

    def action_scroll_home(self) -> None:
        self.follow = False
        self._changed()
        self.start_load(self.load_start)

    def action_scroll_up(self) -> None:
        self._user_scroll(-1)

    def action_page_up(self) -> None:
        self._user_scroll(-max(1, self.scrollable_content_region.height - 1))

    def action_scroll_down(self) -> None:
        self._user_scroll(1)

    def action_page_down(self) -> None:
        self._user_scroll(max(1, self.scrollable_content_region.height - 1))

    def _user_scroll(self, delta: int) -> None:
        if delta < 0 and self.follow:
            self.follow = False
            self._changed()
        self._set_scroll(self.scroll_y + delta)
        self._edge_reached()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._adjusting or not self.is_mounted:
            return
        # The mouse wheel or the scrollbar moved up (a shorter window only clamps to the end).
        if new_value < old_value and new_value < self.max_scroll_y and self.follow:
            self.follow = False
            self._changed()
        self._edge_reached()

    def _edge_reached(self) -> None:
        """Load more from the store when the viewport reached either end of the window."""
        if self.busy:
            return
        if self.scroll_y <= 0 and self.has_older and not self.follow:
            self.start_load(self.load_older)
        elif self.scroll_y >= self.max_scroll_y and not self.at_tail:
            self.start_load(self.load_newer)


class LogPane(Vertical):
    """The live log with its filter field and a status line (follow/pause, window, filter)."""

    DEFAULT_CSS = """
    LogPane { height: 1fr; }
    LogPane > #log-filter { display: none; height: 3; }
    LogPane.filtering > #log-filter { display: block; }
    LogPane > #log-status { height: 1; color: $text-muted; background: $panel; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter log"),
        Binding("escape", "clear_filter", "Back / clear filter"),
    ]

    def __init__(
        self, fetch: LogFetch, *, max_lines: int = 1000, page: int = 400, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self._fetch = fetch
        self._max_lines = max_lines
        self._page = page
        self._status_text = ""

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: lines containing… (Enter applies, Esc clears)", id="log-filter"
        )
        yield LiveLog(self._fetch, max_lines=self._max_lines, page=self._page, id="log-lines")
        yield Static(id="log-status")

    @property
    def live(self) -> LiveLog:
        return self.query_one(LiveLog)

    def on_mount(self) -> None:
        self.live.start_load(self.live.load_tail)

    def action_filter(self) -> None:
        field = self.query_one("#log-filter", Input)
        self.add_class("filtering")
        field.value = self.live.filter_text
        field.focus()

    def action_clear_filter(self) -> None:
        """Esc in the filter field or on a filtered log clears the filter; otherwise it backs out."""
        field = self.query_one("#log-filter", Input)
        if not self.has_class("filtering") and not self.live.filter_text:
            raise SkipAction()  # nothing to clear: Esc goes on to back out of the screen
        self.remove_class("filtering")
        field.value = ""
        if self.live.filter_text:
            self.live.set_filter("")
        self.live.focus()

    @on(Input.Submitted, "#log-filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        event.stop()
        self.live.set_filter(event.value)
        self.remove_class("filtering")  # the status line names the filter; / edits it
        self.live.focus()

    @on(LiveLog.Changed)
    def _status(self, event: LiveLog.Changed) -> None:
        event.stop()
        log = self.live
        parts = [
            "[b]following[/b]" if log.follow else "[b $warning]paused[/] (End follows)",
            f"{len(log.records):,} line{'s' * (len(log.records) != 1)} held",
        ]
        if log.has_older:
            parts.append("older lines above")
        if not log.at_tail:
            parts.append("newer lines below")
        if log.filter_text:
            parts.append(f"filter: [b]{escape(log.filter_text)}[/b]")
        if log.busy:
            parts.append("loading…")
        status = " · ".join(parts)
        if status != self._status_text:  # one line of fixed height: no layout pass needed
            self._status_text = status
            self.query_one("#log-status", Static).update(status, layout=False)
