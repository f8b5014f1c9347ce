"""Central eval loss and aggregated train loss per round, per-client lines (with many clients,
the spread of those that trained: min, median and max), best round marked, other runs
overlaid. Redraws at most twice a second, however often data arrives."""

from __future__ import annotations

import math
import statistics
from typing import Any

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from engine.run_state import RunState
from tui.charts import debiased_ema, downsample, log_ticks
from tui.format import many_clients
from tui.messages import RunsChanged

SMOOTHING_WEIGHT = 0.6
REDRAW_INTERVAL_S = 0.5
# RGB, so that plotext's lines and Rich's legend swatches are the same colour in any theme
RUN_COLORS = (
    (0, 200, 220),
    (255, 150, 0),
    (120, 200, 60),
    (220, 80, 200),
    (230, 210, 60),
    (80, 130, 255),
    (230, 70, 70),
)
TRAIN_COLOR = (255, 150, 0)
CLIENT_COLORS = (245, 250, 240, 248, 242, 252)  # greys, so the aggregate lines stand out
CLIENT_EVAL_COLOR = (110, 160, 170)  # a muted central-eval cyan: the clients' own eval
MIN_PLOT_ROWS = 6  # the legend gives way to the plot below this
SPREAD_COLORS = {"median": 252, "min": 242, "max": 242}


class LossChart(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_y = False
        self.smoothing = False
        self.show_clients = True
        self.client_lines = False  # a line per client even when there are many
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

    @property
    def up_to_date(self) -> bool:
        """Whether what is drawn shows the latest data: no redraw pending or under way."""
        return not self._stale and self._cached is not None

    def legend(self) -> list[str]:
        labels = [label for label, _, _, _ in self._series()]
        best = self._best()
        return labels + ([f"best: round {best[0]}"] if best else [])

    def _redraw_if_stale(self) -> None:
        if self._stale:
            self._cached = None
            self._stale = False
            self.refresh()

    def render(self) -> RenderResult:
        key = (self.size.width, self.size.height, self.app.theme)
        if self._cached is None or self._cached[0] != key:
            self._build()
            self._cached = (key, self._render_with_legend())
            self.renders += 1
        return self._cached[1]

    def _render_with_legend(self) -> Text:
        """The legend's lines above the plot, which gets the rest of the height: plotext's
        own legend box sits on the plot and hides the first rounds of every curve."""
        width, height = self.size.width, self.size.height
        legend = legend_lines(self._legend_entries(), width)[: max(height - MIN_PLOT_ROWS, 0)]
        plot_height = height - len(legend)
        self._plot.plotsize(width, plot_height)
        self._plot._set_size(width, plot_height)  # as PlotextPlot.render does (its issue #5)
        self._plot.theme(self._get_plotext_theme_name(self.app.theme))
        return Text("\n").join([*legend, Text.from_ansi(self._plot.build())])

    def _legend_entries(self) -> list[tuple[str, str, tuple | int | str]]:
        """(swatch, label, colour) of each line, and of the best round's mark."""
        entries: list[tuple[str, str, tuple | int | str]] = [
            ("━━", label, color) for label, _, _, color in self._series()
        ]
        best = self._best()
        if best:
            entries.append(("◆", f"best: round {best[0]}", "green"))
        return entries

    def _series(self) -> list[tuple[str, list[float], list[float], tuple | int]]:
        series: list[tuple[Any, ...]] = []  # (label, *zip(*points), colour)
        overlay = len(self._states) > 1
        for index, (state, name) in enumerate(zip(self._states, self._names)):
            color = RUN_COLORS[index % len(RUN_COLORS)]
            rounds = sorted(state.rounds.values(), key=lambda r: r.round)
            evals = [(r.round, r.eval_loss) for r in rounds if r.eval_loss is not None]
            trains = [(r.round, r.train_loss) for r in rounds if r.train_loss is not None]
            if overlay:  # one line per run: its central eval loss, the comparison that matters
                if evals:
                    series.append((f"{name}: central eval", *zip(*evals), color))
                continue
            if evals:
                series.append(("central eval", *zip(*evals), color))
            if trains:
                series.append(("train (aggregated)", *zip(*trains), TRAIN_COLOR))
            if self.show_clients and many_clients(state) and not self.client_lines:
                series.extend(client_spread(rounds))
                series.extend(client_eval_median(rounds))
            elif self.show_clients:
                for client in sorted(state.clients):
                    points = [
                        (r.round, r.client_train_loss[client])
                        for r in rounds
                        if r.client_train_loss.get(client) is not None
                    ]
                    if points:
                        grey = CLIENT_COLORS[client % len(CLIENT_COLORS)]
                        series.append((f"client {client}", *zip(*points), grey))
                    evals = [
                        (r.round, value)
                        for r in rounds
                        if (value := r.client_eval_loss.get(client)) is not None
                    ]
                    if evals:
                        series.append(
                            (f"client {client}: own eval", *zip(*evals), CLIENT_EVAL_COLOR)
                        )
        return [(label, list(xs), list(ys), color) for label, xs, ys, color in series]

    def _build(self) -> None:
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
        plt.title("loss per round" + (f"  [{', '.join(flags)}]" if flags else ""))
        plt.xlabel("round")
        series = self._series()
        if not series:
            plt.title("loss per round: waiting for the first central evaluation")
            return
        limit = max(2 * self.size.width, 2)
        all_y = []
        for _, xs, ys, color in series:
            if self.smoothing:
                ys = debiased_ema(ys, SMOOTHING_WEIGHT)
            xs, ys = downsample(xs, ys, limit)
            if self.log_y:
                ys = [math.log10(max(y, 1e-12)) for y in ys]
            all_y.extend(ys)
            plt.plot(xs, ys, color=color, marker="braille")
        self._mark_best(plt)
        max_round = max(max(xs) for _, xs, _, _ in series)
        plt.xticks(list(range(0, int(max_round) + 1, max(1, int(max_round) // 10 or 1))))
        if self.log_y and all_y:
            positions, labels = log_ticks(10 ** min(all_y), 10 ** max(all_y))
            plt.yticks(positions, labels)

    def _best(self) -> tuple[int, float] | None:
        """The watched run's best round and its eval loss, if any round was evaluated."""
        if not self._states:
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
        number, value = best
        if self.log_y:
            value = math.log10(max(value, 1e-12))
        plt.vline(number, "green")
        plt.scatter([number], [value], marker="◆", color="green")


def client_spread(rounds: list) -> list[tuple[Any, ...]]:
    """(label, xs, ys, colour) of the min, median and max train loss of the clients that
    trained each round."""
    per_round = [
        (r.round, [loss for loss in r.client_train_loss.values() if loss is not None])
        for r in rounds
    ]
    per_round = [(number, losses) for number, losses in per_round if losses]
    if not per_round:
        return []
    xs = tuple(number for number, _ in per_round)
    return [
        (f"clients: {name}", xs, tuple(pick(losses) for _, losses in per_round), color)
        for name, pick, color in (
            ("max", max, SPREAD_COLORS["max"]),
            ("median", statistics.median, SPREAD_COLORS["median"]),
            ("min", min, SPREAD_COLORS["min"]),
        )
    ]


def client_eval_median(rounds: list) -> list[tuple[Any, ...]]:
    """The median of the clients' own eval losses each round (client_eval), where there are."""
    points = [
        (r.round, statistics.median(values))
        for r in rounds
        if (values := [v for v in r.client_eval_loss.values() if v is not None])
    ]
    return [("clients: own eval, median", *zip(*points), CLIENT_EVAL_COLOR)] if points else []


def legend_lines(entries: list[tuple[str, str, tuple | int | str]], width: int) -> list[Text]:
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


def _rich_color(color: tuple | int | str) -> str:
    """plotext's colour (an RGB tuple, a 256-colour index or a name) as a Rich style."""
    if isinstance(color, tuple):
        return "rgb({},{},{})".format(*color)
    return f"color({color})" if isinstance(color, int) else color
