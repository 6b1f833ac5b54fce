"""Section 4: analytics of the stored runs as plots (textual-plotext), the figures of `stats`.

One engine read (`Engine.stats`, grouped in SQL) fills a totals line and six plots: runs per day
by status, cost per day by model, findings per day by severity, answered interventions by
waiting time, the checks that fail most, and phases by attempts. Days come from the stored
timestamps, never from today, so a history looks the same whenever it is shown; `s` narrows it to
the last 7 or 30 days counted from the app's clock, and `t` shows tokens by role in place of cost
by model.
"""

from __future__ import annotations

import math
import time
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label
from textual_plotext import PlotextPlot

from core.errors import OrchestratorError
from core.stats import parse_since
from tui.stats_command import duration

if TYPE_CHECKING:
    from tui.app import OrchestratorApp

# The periods `s` steps through: None is every run, else the last N days.
PERIODS: tuple[int | None, ...] = (None, 30, 7)
# Days a per-day plot shows at most: the newest ones of the history.
MAX_DAYS = 31
# Axis labels a plot shows at most (every other one, or fewer, past that).
MAX_LABELS = 12
# Checks the failing-checks plot lists (the most failing first).
TOP_CHECKS = 6
# A run changing reloads the figures at most this often (a live run changes many times).
RELOAD_EVERY_SECONDS = 5.0
STATUS_COLORS = {
    "completed": "green",
    "failed": "red",
    "cancelled": "orange",
    "interrupted": "blue",
    "waiting": "cyan",
    "executing": "magenta",
    "planning": "magenta",
    "pending": "gray",
}
# plotext's color names as Rich (the legends) spells them.
RICH_COLORS = {
    "green": "green",
    "red": "red",
    "orange": "dark_orange",
    "magenta": "magenta",
    "cyan": "cyan",
    "blue": "blue",
    "gray": "grey50",
}
SEVERITY_COLORS = {"major": "red", "medium": "orange", "minor": "cyan"}
MODEL_COLORS = ("blue", "green", "orange", "magenta", "cyan", "red")
PLOTS = ("runs", "cost", "findings", "waiting", "checks", "attempts")


class AnalyticsScreen(Screen[None]):
    """Totals and plots of the stored runs; `s` changes the period, `t` cost or tokens, `n`/`p`
    step through the plots, `r` reads the store again."""

    SECTION = "Analytics"
    SUB_TITLE = "Analytics"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012  (typed by Screen)
    DEFAULT_CSS = """
    AnalyticsScreen #bar { height: 1; padding: 0 1; background: $boost; }
    AnalyticsScreen #totals { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    AnalyticsScreen #period { width: auto; color: $text-muted; }
    AnalyticsScreen #plots { height: 1fr; }
    AnalyticsScreen .chart { height: 20; }
    AnalyticsScreen .chart PlotextPlot { height: 1fr; }
    AnalyticsScreen .legend { height: 1; padding: 0 1; color: $text-muted; }
    AnalyticsScreen.-wide #plots { layout: grid; grid-size: 2; grid-rows: 14; grid-gutter: 0 1; }
    AnalyticsScreen.-wide .chart { height: 14; }
    AnalyticsScreen #empty { display: none; padding: 2 4; color: $text-muted; }
    AnalyticsScreen.empty #empty { display: block; }
    AnalyticsScreen.empty #plots { display: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "period", "Period"),
        Binding("n", "step(1)", "Next plot"),
        Binding("p", "step(-1)", "Previous plot", show=False),
        Binding("t", "tokens", "Cost/tokens"),
        Binding("r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.period: int | None = None
        self.show_tokens = False  # the usage plot shows tokens by role instead of cost by model
        self.figures: dict[str, Any] | None = None  # the last document shown
        self.plotted: dict[str, dict[str, list[float]]] = {}  # what each plot shows, by series
        self._loaded_at = 0.0
        self._plot_index = 0

    @property
    def orchestrator(self) -> OrchestratorApp:
        return cast("OrchestratorApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="bar"):
            yield Label("reading the history…", id="totals")
            yield Label("", id="period")
        with VerticalScroll(id="plots"):
            for name in PLOTS:
                with Vertical(id=f"{name}-chart", classes="chart"):
                    yield PlotextPlot(id=name)
                    yield Label("", id=f"{name}-legend", classes="legend")
        yield Label(
            "No runs to count yet. Press 3 to start one from the form, or run `orchestrator demo`.",
            id="empty",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#plots", VerticalScroll).focus()
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def run_changed(self, run_id: str) -> None:
        if time.monotonic() - self._loaded_at >= RELOAD_EVERY_SECONDS:
            self.reload()

    def action_reload(self) -> None:
        self.reload()

    def action_period(self) -> None:
        """Step to the next period: every run, the last 30 days, the last 7."""
        self.period = PERIODS[(PERIODS.index(self.period) + 1) % len(PERIODS)]
        self.reload()

    def action_tokens(self) -> None:
        """Switch the usage plot between cost per model and tokens per role."""
        self.show_tokens = not self.show_tokens
        if self.figures is not None:
            self._show(self.figures)

    def action_step(self, delta: int) -> None:
        """Scroll the next (or previous) plot into view."""
        self._plot_index = (self._plot_index + delta) % len(PLOTS)
        chart = self.query_one(f"#{PLOTS[self._plot_index]}-chart", Vertical)
        self.query_one("#plots", VerticalScroll).scroll_to_widget(chart, animate=False, top=True)

    def since(self) -> str | None:
        """The first day of the period (from the app's clock), or None for every run."""
        if self.period is None:
            return None
        return parse_since(f"{self.period}d", self.orchestrator.now().date())

    def reload(self) -> None:
        self._loaded_at = time.monotonic()
        self._load(self.since())

    @work(group="load", exclusive=True)
    async def _load(self, since: str | None) -> None:
        try:
            doc = await self.orchestrator.engine.stats(since=since)
        except OrchestratorError as exc:
            self.notify(str(exc), title="analytics", severity="error")
            return
        self._show(doc)

    def _show(self, doc: dict[str, Any]) -> None:
        if not self.query("#totals"):
            return  # closing
        self.figures = doc
        t = doc["totals"]
        waiting = doc["waiting"]
        self.set_class(t["runs"] == 0, "empty")
        self.query_one("#totals", Label).update(_totals_line(t, waiting))
        since = doc["filters"]["since"]
        self.query_one("#period", Label).update(f" since {since} (s)" if since else " all runs (s)")
        days = _days(doc)
        shown = [d[5:] for d in days]  # MM-DD
        self._bars(
            "runs",
            "Runs per day by status",
            shown,
            _per_day(doc["runs_per_day"], days, "by_status"),
            STATUS_COLORS,
        )
        # `t` switches this plot between cost by model and tokens by role.
        field, group = ("tokens", "role") if self.show_tokens else ("cost_usd", "model")
        usage: dict[str, dict[str, float]] = {}
        for u in doc["usage_per_day"]:
            by_day = usage.setdefault(u[group], {})
            by_day[u["day"]] = by_day.get(u["day"], 0.0) + u[field]
        keys = sorted(usage)
        self._bars(
            "cost",
            "Tokens per day by role" if self.show_tokens else "Cost per day by model (USD)",
            shown,
            {k: [usage[k].get(d, 0.0) for d in days] for k in keys},
            dict(zip(keys, MODEL_COLORS, strict=False)),
            money=not self.show_tokens,
        )
        self._bars(
            "findings",
            "Findings per day by severity",
            shown,
            _per_day(doc["findings_per_day"], days, "by_severity"),
            SEVERITY_COLORS,
        )
        self._bars(
            "waiting",
            "Answered questions by time waiting for a person",
            [b["label"] for b in waiting["buckets"]],
            {"answered": [b["answered"] for b in waiting["buckets"]]},
            {"answered": "cyan"},
            note=f"median {duration(waiting['median_seconds'])}, longest "
            f"{duration(waiting['max_seconds'])}; {waiting['pending']} pending",
        )
        checks = doc["failing_checks"][:TOP_CHECKS]
        self._bars(
            "checks",
            "Checks that fail most",
            [c["tool"] for c in reversed(checks)],
            {"attempts": [c["attempts"] for c in reversed(checks)]},
            {"attempts": "red"},
            horizontal=True,
            note="attempts in which the check reported a finding",
        )
        attempts = doc["attempts_per_phase"]
        self._bars(
            "attempts",
            "Phases by attempts taken",
            [str(a["attempts"]) for a in attempts],
            {"phases": [a["phases"] for a in attempts]},
            {"phases": "blue"},
            note=f"{t['phases']} phases, {t['attempts']} attempts; 0: never started",
        )

    def _bars(
        self,
        name: str,
        title: str,
        labels: list[str],
        series: dict[str, list[float]],
        colors: dict[str, str],
        *,
        horizontal: bool = False,
        money: bool = False,
        note: str = "",
    ) -> None:
        """Draw one bar plot (several series stacked) and its legend line below it."""
        series = {k: v for k, v in series.items() if any(v)}
        self.plotted[name] = {"labels": labels, **series}  # type: ignore[dict-item]
        plt = self.query_one(f"#{name}", PlotextPlot).plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title if labels and series else f"{title}: none yet")
        legend = Text(note, style="")
        if labels and series:
            top = max(sum(values) for values in zip(*series.values(), strict=True))
            ticks = _ticks(top, money=money)
            shown = [f"${v:.2f}" if money else f"{v:g}" for v in ticks]
            positions = [float(n) for n in range(1, len(labels) + 1)]
            every = math.ceil(len(labels) / MAX_LABELS)  # labels that fit side by side
            places, names = positions[::every], labels[::every]
            if horizontal:
                plt.xlim(0, ticks[-1])
                plt.xticks(ticks, shown)
                plt.ylim(0.4, len(labels) + 0.6)
                plt.yticks(places, names)
            else:
                plt.ylim(0, ticks[-1])
                plt.yticks(ticks, shown)
                plt.xlim(0.4, len(labels) + 0.6)
                plt.xticks(places, names)
            _stack(plt, labels, series, colors, horizontal=horizontal)
            if len(series) > 1 or not note:
                legend = Text()
                for key in series:
                    legend.append("■ ", style=RICH_COLORS.get(colors.get(key, "gray"), "white"))
                    legend.append(f"{key} ")
        self.query_one(f"#{name}-legend", Label).update(legend)
        self.query_one(f"#{name}", PlotextPlot).refresh()


def _totals_line(t: dict[str, Any], waiting: dict[str, Any]) -> str:
    """The figures above the plots: runs, tokens, cost, findings, waiting."""
    done = t["runs_by_status"].get("completed", 0)
    return (
        f"{t['runs']} runs ({done} completed) · {t['tokens']:,} tokens · ${t['cost_usd']:.2f} · "
        f"{t['findings']} findings · {waiting['answered']} answers, median wait "
        f"{duration(waiting['median_seconds'])}"
    )


def _stack(
    plt: Any,
    labels: list[str],
    series: dict[str, list[float]],
    colors: dict[str, str],
    *,
    horizontal: bool,
) -> None:
    """Stacked bars at positions 1..n: each series' running total drawn tallest first, so the
    next one paints over its lower part. A zero-length bar is never drawn (plotext would blank
    the bottom row under the bars drawn before it)."""
    totals = [0.0] * len(labels)
    layers = []
    for key, values in series.items():
        totals = [t + v for t, v in zip(totals, values, strict=True)]
        layers.append((key, totals))
    for key, heights in reversed(layers):
        for x, height in enumerate(heights, start=1):
            if height <= 0:
                continue
            # One bar a call: plotext sizes bars by the gaps between the positions of one call.
            plt.bar(
                [float(x)],
                [height],
                color=colors.get(key, "gray"),
                orientation="horizontal" if horizontal else "vertical",
                width=0.5,
                minimum=0,
                reset_ticks=False,
            )


def _ticks(top: float, *, money: bool = False) -> list[float]:
    """Up to five evenly spaced axis ticks from 0 past `top`: whole numbers for counts."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if not money:
        step = max(1.0, math.ceil(step))
    count = math.ceil(top / step)
    return [round(step * n, 10) for n in range(count + 1)]


def _days(doc: dict[str, Any]) -> list[str]:
    """Every day from the history's first to its last (at most the newest MAX_DAYS), as stored
    (YYYY-MM-DD); the plots label them MM-DD."""
    first, last = doc["days"]["first"], doc["days"]["last"]
    if first is None:
        return []
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    start = max(start, end - timedelta(days=MAX_DAYS - 1))
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _per_day(entries: list[dict[str, Any]], days: list[str], key: str) -> dict[str, list[float]]:
    """Series by the keys of each entry's `key` mapping, one value per day (0 where none)."""
    by_day = {e["day"]: e[key] for e in entries}
    names = sorted({name for e in entries for name in e[key]})
    return {name: [by_day.get(d, {}).get(name, 0) for d in days] for name in names}
