"""What the app's sections share: re-reading on a timer while they show and when another process
commits (TimedReload: runs, interventions, lessons), for the list sections (ListSection:
interventions, lessons) a table whose highlighted item is kept across reloads, `o` to open the
item's run and Esc back to the runs, and the `/` filter field (FilterField: runs, lessons)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

from textual import on
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Input

if TYPE_CHECKING:
    from tui.app import OrchestratorApp


class _Keyed(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_Keyed)


class FilterField(Screen[None]):
    """A section's `/` filter: an Input with id `filter`, hidden (class `filtering` unset) and
    disabled until asked, whose text is `query_text`. Subclasses name the widget that holds the
    list (`filter_list`), show it again for new text (`refilter`), and call `leave_filter` on Esc."""

    def __init__(self) -> None:
        super().__init__()
        self.query_text = ""

    def filter_list(self) -> Widget:
        raise NotImplementedError

    def refilter(self) -> None:
        raise NotImplementedError

    def action_filter(self) -> None:
        self.add_class("filtering")
        field = self.query_one("#filter", Input)
        field.disabled = False
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.refilter()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.filter_list().focus()

    def leave_filter(self) -> bool:
        """Esc: leave the filter field, then clear the filter; False when there was neither."""
        field = self.query_one("#filter", Input)
        if field.has_focus and field.value:
            self.filter_list().focus()
        elif self.query_text or field.has_focus:
            field.value = ""
            self.query_text = ""
            self.remove_class("filtering")
            field.disabled = True
            self.filter_list().focus()
            self.refilter()
        else:
            return False
        return True


class TimedReload(Screen[None]):
    """A section that re-reads what it shows on a timer while it shows (and when another process
    commits), and stops while another section or a run view hides it; a modal over it leaves it
    visible, so it keeps updating. Subclasses define `reload` and call `_start_refresh`."""

    REFRESH_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self._hidden = False  # another section or a run view covers it

    @property
    def orchestrator(self) -> OrchestratorApp:
        return cast("OrchestratorApp", self.app)

    def reload(self) -> None:
        raise NotImplementedError

    def _start_refresh(self) -> None:
        """Read now and then every REFRESH_SECONDS (on_mount calls it)."""
        self.reload()
        self._timer = self.set_interval(self.REFRESH_SECONDS, self._timed_reload)

    def on_screen_suspend(self) -> None:
        if self._timer is not None and not isinstance(self.app.screen, ModalScreen):
            self._timer.pause()
            self._hidden = True

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
            self._hidden = False
            self.reload()

    def _timed_reload(self) -> None:
        if self.orchestrator.poll_due(type(self).__name__):
            self.reload()

    def store_changed(self) -> None:
        """Another process committed to the shared store: re-read while it shows."""
        if self._timer is not None and not self._hidden:
            self.reload()


class ListSection(TimedReload, Generic[T]):
    """A section listing `items` in its one DataTable; subclasses compose it, name its columns
    (COLUMNS: label and key), read the items in `_load` and hand them to `_fill`."""

    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = ()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in self.COLUMNS:
            table.add_column(label, key=key)
        self._start_refresh()

    def __init__(self) -> None:
        super().__init__()
        self.items: list[T] = []
        self._rows: list[tuple[Any, ...]] = []

    @property
    def current(self) -> T | None:
        """The highlighted item, as last read."""
        table = self.query_one(DataTable)
        if not self.items or not (0 <= table.cursor_row < len(self.items)):
            return None
        return self.items[table.cursor_row]

    @property
    def current_run_id(self) -> str | None:
        """The run `o` opens for the highlighted item."""
        raise NotImplementedError

    def reload(self) -> None:
        self._load()

    def _load(self) -> Any:
        """Read the items (in a worker: subclasses decorate it with @work) and `_fill` the table."""
        raise NotImplementedError

    def _fill(self, items: list[T], rows: Sequence[tuple[Any, ...]]) -> bool:
        """Put the items' rows in the table when they changed, keeping the highlighted item;
        False when the table is gone (not composed yet, or closing)."""
        tables = self.query(DataTable)
        if not tables:
            return False
        table = tables.first()
        keep = self.current.id if self.current is not None else None
        ids = [item.id for item in items]
        if list(rows) != self._rows or ids != [item.id for item in self.items]:
            table.clear()
            for key, cells in zip(ids, rows, strict=True):
                table.add_row(*cells, key=key)
            if keep in ids:
                table.move_cursor(row=ids.index(keep), animate=False)
        self.items, self._rows = items, list(rows)
        self.set_class(not items, "empty")
        return True

    def action_open_run(self) -> None:
        run_id = self.current_run_id
        if run_id is not None:
            self.orchestrator.open_run(run_id)

    def action_back(self) -> None:
        self.orchestrator.switch_mode("runs")
