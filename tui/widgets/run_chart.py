"""The run chart: one of the views of `tui.chart_views` (loss, perplexity, tokens/s, bytes,
memory), with its legend above the plot, log-Y and smoothing on any view, the best round marked
where the view is per round of eval loss, and the rounds from which live changes applied marked
in every view (tui.chart_marks). Redraws at most twice a second, however often
data arrives."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from engine.record.run_state import RunState
from tui.chart_lines import RUN_COLORS, ChartView, Color, Line, LineOptions
from tui.chart_marks import Mark, change_marks
from tui.chart_views import VIEWS, VIEWS_BY_KEY
from tui.charts import debiased_ema, downsample, log_ticks
from tui.messages import RunsChanged

SMOOTHING_WEIGHT = 0.6
REDRAW_INTERVAL_S = 0.5
MIN_PLOT_ROWS = 6  # the legend gives way to the plot below this


class RunChart(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_y = False
        self.smoothing = False
        self.show_clients = True
        self.client_lines = False  # a line per client even when there are many
        self.view: ChartView = VIEWS[0]
        self.renders = 0  # full plot builds, for tests of the throttle
        self._states: list[RunState] = []
        self._names: list[str] = []
        self._stale = False
        self._cached: tuple[tuple, RenderResult] | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(REDRAW_INTERVAL_S, self._redraw_if_stale)

    def on_runs_changed(self, message: RunsChanged) -> None:
        self._states, self._names = message.states, message.names
        self._stale = True

    def toggle(self, option: str) -> bool:
        """Flip log_y, smoothing or show_clients; redraw now (a key press deserves it)."""
        setattr(self, option, not getattr(self, option))
        self._stale = True
        self._redraw_if_stale()
        return getattr(self, option)

    def show_view(self, key: str) -> None:
        """Switch to the view `key` ("loss", "perplexity", ...); redraw now."""
        self.view = VIEWS_BY_KEY[key]
        self._stale = True
        self._redraw_if_stale()

    @property
    def up_to_date(self) -> bool:
        """Whether what is drawn shows the latest data: no redraw pending or under way."""
        return not self._stale and self._cached is not None

    def legend(self) -> list[str]:
        """Every entry of the legend, as it reads."""
        return [label for _, label, _ in self._legend_entries(self.lines())]

    def marks(self) -> list[Mark]:
        """The changes marked in the current view."""
        colors = [RUN_COLORS[index % len(RUN_COLORS)] for index in range(len(self._states))]
        return change_marks(self._states, self.view.x_of_round, colors)

    def _redraw_if_stale(self) -> None:
        if self._stale:
            self._cached = None
            self._stale = False
            self.refresh()

    def render(self) -> RenderResult:
        key = (self.size.width, self.size.height, self.app.theme)
        if self._cached is None or self._cached[0] != key:
            lines = self.lines()  # once per build: the memory view gathers every sample
            self._build(lines)
            self._cached = (key, self._render_with_legend(lines))
            self.renders += 1
        return self._cached[1]

    def _render_with_legend(self, lines: list[Line]) -> Text:
        """The legend's lines above the plot, which gets the rest of the height: plotext's
        own legend box sits on the plot and hides the first rounds of every curve."""
        width, height = self.size.width, self.size.height
        legend = legend_lines(self._legend_entries(lines), width)[: max(height - MIN_PLOT_ROWS, 0)]
        plot_height = height - len(legend)
        self._plot.plotsize(width, plot_height)
        self._plot._set_size(width, plot_height)  # as PlotextPlot.render does (its issue #5)
        self._plot.theme(self._get_plotext_theme_name(self.app.theme))
        return Text("\n").join([*legend, Text.from_ansi(self._plot.build())])

    def _legend_entries(self, lines: list[Line]) -> list[tuple[str, str, Color]]:
        """(swatch, label, colour) of each line, and of the best round's mark."""
        entries: list[tuple[str, str, Color]] = [("━━", line.label, line.color) for line in lines]
        best = self._best()
        if best:
            entries.append(("◆", f"best: round {best[0]}", "green"))
        for mark in self.marks():
            entries.append(("┆", f"from {self._x_text(mark.x)}: {mark.label}", mark.color))
        return entries

    def _x_text(self, x: float) -> str:
        return f"round {x:g}" if self.view.x_label == "round" else f"{x:.1f} min"

    def lines(self) -> list[Line]:
        """What the current view draws now, line by line."""
        options = LineOptions(show_clients=self.show_clients, client_lines=self.client_lines)
        return self.view.lines(self._states, self._names, options)

    def _build(self, lines: list[Line]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        flags = [
            name
            for name, on in (
                ("log-y", self.log_y),
                (f"smoothed {SMOOTHING_WEIGHT}", self.smoothing),
            )
            if on
        ]
        plt.title(self.view.title + (f"  [{', '.join(flags)}]" if flags else ""))
        plt.xlabel(self.view.x_label)
        if not lines:
            plt.title(self.view.waiting)
            return
        limit = max(2 * self.size.width, 2)
        all_y = []
        for line in lines:
            ys = debiased_ema(line.ys, SMOOTHING_WEIGHT) if self.smoothing else line.ys
            xs, ys = downsample(line.xs, ys, limit)
            if self.log_y:
                ys = [math.log10(max(y, 1e-12)) for y in ys]
            all_y.extend(ys)
            plt.plot(xs, ys, color=line.color, marker="braille")
        self._mark_best(plt)
        last_x = max(max(line.xs, default=0) for line in lines)
        for mark in self.marks():  # lines end at the top of the data, labelled there
            plt.vline(mark.x, mark.color)
            if all_y:  # a change for a round still to come stands at the right edge: label leftward
                rightmost = mark.x >= last_x
                plt.text(
                    mark.label,
                    mark.x,
                    max(all_y),
                    color=mark.color,
                    alignment="right" if rightmost else "left",
                )
        if self.view.x_label == "round":
            max_round = max(max(line.xs) for line in lines)
            plt.xticks(list(range(0, int(max_round) + 1, max(1, int(max_round) // 10 or 1))))
        if self.log_y and all_y:
            positions, labels = log_ticks(10 ** min(all_y), 10 ** max(all_y))
            plt.yticks(positions, labels)

    def _best(self) -> tuple[int, float] | None:
        """The watched run's best round and its eval loss, if the view marks it and any round
        was evaluated."""
        if not self._states or self.view.best_value is None:
            return None
        state = self._states[0]
        if state.best_round is None or state.best_round not in state.rounds:
            return None
        eval_loss = state.rounds[state.best_round].eval_loss
        return None if eval_loss is None else (state.best_round, eval_loss)

    def _mark_best(self, plt) -> None:
        best = self._best()
        if best is None:
            return
        number, eval_loss = best
        value = self.view.best_value(eval_loss) if self.view.best_value else eval_loss
        if self.log_y:
            value = math.log10(max(value, 1e-12))
        plt.vline(number, "green")
        plt.scatter([number], [value], marker="◆", color="green")


def legend_lines(entries: list[tuple[str, str, Color]], width: int) -> list[Text]:
    """The legend as lines of at most `width` cells: a coloured swatch and a label each."""
    lines, line = [], Text()
    for swatch, label, color in entries:
        style = _rich_color(color)
        item = Text(swatch, style=style) + Text(f" {label}")
        if line and line.cell_len + 2 + item.cell_len > width:
            lines.append(line)
            line = Text()
        line += Text("  ") + item if line else item
    return [*lines, line] if line else lines


def _rich_color(color: Color) -> str:
    """plotext's colour (an RGB tuple, a 256-colour index or a name) as a Rich style."""
    if isinstance(color, tuple):
        return "rgb({},{},{})".format(*color)
    return f"color({color})" if isinstance(color, int) else color
