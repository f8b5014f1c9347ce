"""What the run chart can show: each view turns the runs' states into lines (pure functions, no
drawing). Loss and perplexity are per round with the best round marked; tokens per second per
client and bytes per round are per round; memory per client is over the run's time. Several runs
overlaid give one line per run in every view."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.core.units import GIB, MIB
from engine.record.run_state import RoundResult, RunState
from tui.chart_marks import minutes_of_round, rounds_of, with_history, x_of_round
from tui.format import many_clients

RGB = tuple[int, int, int]
Color = RGB | int | str  # plotext's: RGB, a 256-colour index or a name

# RGB, so that plotext's lines and Rich's legend swatches are the same colour in any theme
RUN_COLORS: tuple[RGB, ...] = (
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
SPREAD_COLORS = {"median": 252, "min": 242, "max": 242}
MEMORY_BINS = 200  # spans of the run's time over which many clients' memory is gathered


@dataclass(frozen=True)
class Line:
    label: str
    xs: list[float]
    ys: list[float]
    color: Color


@dataclass(frozen=True)
class LineOptions:
    """The chart's toggles that decide which lines a view draws."""

    show_clients: bool = True  # per-client lines (`c`)
    client_lines: bool = False  # a line per client even when there are many (`i`)


Lines = Callable[[list[RunState], list[str], LineOptions], list[Line]]


@dataclass(frozen=True)
class ChartView:
    key: str
    name: str  # what the key and the palette call it
    title: str
    x_label: str
    waiting: str  # the title while there is nothing to draw
    lines: Lines
    best_value: Callable[[float], float] | None = None  # y of the best round's mark, if marked
    x_of_round: Callable[[RunState, int], float | None] = x_of_round  # where changes are marked


def loss_lines(states: list[RunState], names: list[str], options: LineOptions) -> list[Line]:
    """Central eval and aggregated train loss per round, and each client's train loss and own
    eval (with many clients, their spread); overlaid runs: each run's central eval."""
    if len(states) > 1:
        return [
            Line(f"{name}: central eval", *_points(rounds_of(state), _eval), _run_color(index))
            for index, (state, name) in enumerate(zip(states, names))
            if any(r.eval_loss is not None for r in state.rounds.values())
        ]
    if not states:
        return []
    state = states[0]
    rounds = rounds_of(state)
    lines = [
        Line(label, *_points(rounds, value), color)
        for label, value, color in (
            ("central eval", _eval, RUN_COLORS[0]),
            ("train (aggregated)", lambda r: r.train_loss, TRAIN_COLOR),
        )
    ]
    if options.show_clients and many_clients(state) and not options.client_lines:
        lines += spread(rounds, lambda r: r.client_train_loss.values(), "clients")
        lines += client_eval_median(rounds)
    elif options.show_clients:
        for client in sorted(state.clients):
            grey = CLIENT_COLORS[client % len(CLIENT_COLORS)]
            lines.append(
                Line(f"client {client}", *_points(rounds, _of(client, "train_loss")), grey)
            )
            lines.append(
                Line(
                    f"client {client}: own eval",
                    *_points(rounds, _of(client, "eval_loss")),
                    CLIENT_EVAL_COLOR,
                )
            )
    return [line for line in lines if line.xs]


def perplexity_lines(states: list[RunState], names: list[str], options: LineOptions) -> list[Line]:
    """exp(loss) of every loss line: the same lines in the unit papers report."""
    return [
        Line(line.label, line.xs, [perplexity(y) for y in line.ys], line.color)
        for line in loss_lines(states, names, options)
    ]


def throughput_lines(states: list[RunState], names: list[str], options: LineOptions) -> list[Line]:
    """Tokens per second of local training per round: each client's (with many, their spread)
    and all clients' together; overlaid runs: each run's all-clients figure."""
    lines = []
    for index, (state, name) in enumerate(zip(states, names)):
        rounds = rounds_of(state)
        estimated = " (est.)" if state.tokens_estimated else ""
        total = Line(
            f"{name + ': ' if len(states) > 1 else ''}all clients{estimated}",
            *_points(rounds, lambda r: sum(_client_rates(r).values()) or None),
            _run_color(index),
        )
        lines.append(total)
        if len(states) > 1 or not options.show_clients:
            continue
        if many_clients(state) and not options.client_lines:
            lines += spread(rounds, lambda r: _client_rates(r).values(), "clients")
            continue
        for client in sorted(state.clients):
            lines.append(
                Line(
                    f"client {client}{estimated}",
                    *_points(rounds, _rate_of(client)),
                    CLIENT_COLORS[client % len(CLIENT_COLORS)],
                )
            )
    return [line for line in lines if line.xs]


def bytes_lines(states: list[RunState], names: list[str], options: LineOptions) -> list[Line]:
    """Model bytes the server sent and received each round, in MiB; overlaid runs: each run's
    both ways together."""
    lines = []
    for index, (state, name) in enumerate(zip(states, names)):
        rounds = rounds_of(state, first=1)
        if len(states) > 1:
            both = _points(rounds, lambda r: _mib((r.bytes_sent or 0) + (r.bytes_received or 0)))
            lines.append(Line(f"{name}: sent + received", *both, _run_color(index)))
            continue
        lines += [
            Line("sent", *_points(rounds, lambda r: _mib(r.bytes_sent)), RUN_COLORS[0]),
            Line("received", *_points(rounds, lambda r: _mib(r.bytes_received)), TRAIN_COLOR),
        ]
    return [line for line in lines if line.xs]


def memory_lines(states: list[RunState], names: list[str], options: LineOptions) -> list[Line]:
    """Each client's memory (VRAM where NVML or torch sees it, else host RSS) in GiB over the
    run's minutes (with many clients, their spread); overlaid runs: each run's largest client."""
    lines = []
    for index, (state, name) in enumerate(zip(states, names)):
        start = state.started_at or 0.0
        series = {
            number: (
                [(t - start) / 60 for t, _ in c.memory_over_time],
                [u / GIB for _, u in c.memory_over_time],
            )
            for number, c in sorted(state.clients.items())
        }
        if len(states) > 1:
            times, values = _binned(series.values())
            line = Line(
                f"{name}: largest client", times, [max(v) for v in values], _run_color(index)
            )
            lines.append(line)
        elif many_clients(state) and not options.client_lines:
            times, values = _binned(series.values())
            lines += [
                Line(f"clients: {label}", times, [pick(v) for v in values], SPREAD_COLORS[label])
                for label, pick in _SPREAD
            ]
        else:
            lines += [
                Line(f"client {number}", xs, ys, RUN_COLORS[number % len(RUN_COLORS)])
                for number, (xs, ys) in series.items()
            ]
    return [line for line in lines if line.xs]


VIEWS = (
    ChartView(
        "loss",
        "Loss",
        "loss per round",
        "round",
        "loss per round: waiting for the first central evaluation",
        with_history(loss_lines),
        best_value=lambda loss: loss,
    ),
    ChartView(
        "perplexity",
        "Perplexity",
        "perplexity per round (exp of the loss)",
        "round",
        "perplexity per round: waiting for the first central evaluation",
        with_history(perplexity_lines),
        best_value=lambda loss: perplexity(loss),
    ),
    ChartView(
        "throughput",
        "Tokens/s",
        "training tokens per second, per client",
        "round",
        "tokens per second: waiting for the first client to finish a round",
        with_history(throughput_lines),
    ),
    ChartView(
        "bytes",
        "Bytes",
        "model bytes per round, MiB (server side)",
        "round",
        "bytes per round: waiting for the first round to finish",
        with_history(bytes_lines),
    ),
    ChartView(
        "memory",
        "Memory",
        "memory per client, GiB (VRAM where seen, else host RSS)",
        "minutes",
        "memory per client: waiting for the first sample",
        memory_lines,
        x_of_round=minutes_of_round,
    ),
)
VIEWS_BY_KEY = {view.key: view for view in VIEWS}


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # a diverged loss stays a (huge) number, not an overflow


def spread(
    rounds: list[RoundResult], values: Callable[[RoundResult], Iterable[float | None]], who: str
) -> list[Line]:
    """The max, median and min of `values` of each round (of the clients that have one)."""
    per_round = [(r.round, [v for v in values(r) if v is not None]) for r in rounds]
    per_round = [(number, found) for number, found in per_round if found]
    xs = [float(number) for number, _ in per_round]
    return [
        Line(f"{who}: {label}", xs, [pick(found) for _, found in per_round], SPREAD_COLORS[label])
        for label, pick in _SPREAD
    ]


def client_eval_median(rounds: list[RoundResult]) -> list[Line]:
    """The median of the clients' own eval losses each round (client_eval), where there are."""
    points = [
        (float(r.round), statistics.median(values))
        for r in rounds
        if (values := [v for v in r.client_eval_loss.values() if v is not None])
    ]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return [Line("clients: own eval, median", xs, ys, CLIENT_EVAL_COLOR)] if points else []


_SPREAD: tuple[tuple[str, Callable[[list[float]], float]], ...] = (
    ("max", max),
    ("median", statistics.median),
    ("min", min),
)


def _binned(
    series: Iterable[tuple[list[float], list[float]]], bins: int = MEMORY_BINS
) -> tuple[list[float], list[list[float]]]:
    """The points of several series (each client's, sampled at its own times) gathered into
    `bins` equal spans of x: each non-empty span's latest x and the values that fell in it."""
    points = sorted((x, y) for xs, ys in series for x, y in zip(xs, ys))
    if not points:
        return [], []
    low, high = points[0][0], points[-1][0]
    width = (high - low) / bins or 1.0
    values: dict[int, list[float]] = defaultdict(list)
    latest: dict[int, float] = {}
    for x, y in points:  # in order of x: a span's x ends as its latest
        span = min(int((x - low) / width), bins - 1)
        values[span].append(y)
        latest[span] = x
    spans = sorted(values)
    return [latest[span] for span in spans], [values[span] for span in spans]


def _points(
    rounds: list[RoundResult], value: Callable[[RoundResult], float | None]
) -> tuple[list[float], list[float]]:
    """(rounds, values) of the rounds that have a value."""
    pairs = [(float(r.round), y) for r in rounds if (y := value(r)) is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _eval(result: RoundResult) -> float | None:
    return result.eval_loss


def _of(client: int, what: str) -> Callable[[RoundResult], float | None]:
    """A client's train loss or own eval loss in a round."""
    table = "client_train_loss" if what == "train_loss" else "client_eval_loss"
    return lambda result: getattr(result, table).get(client)


def _rate_of(client: int) -> Callable[[RoundResult], float | None]:
    return lambda result: _client_rates(result).get(client)


def _client_rates(result: RoundResult) -> dict[int, float]:
    return {
        client: tokens / seconds
        for client, tokens in result.client_tokens.items()
        if (seconds := result.client_seconds.get(client))
    }


def _mib(count: int | None) -> float | None:
    return None if count is None else count / MIB


def _run_color(index: int) -> Color:
    return RUN_COLORS[index % len(RUN_COLORS)]
