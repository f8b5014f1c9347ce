"""What the run chart can show: each view turns the runs' states into lines (pure functions, no
drawing). Loss and perplexity are per round with the best round marked; tokens per second per
client, bytes and code_eval's pass@k are per round; memory per client is over the run's time.
Several runs overlaid give one line per run in every view."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable

from engine.core.units import GIB, MIB
from engine.record.run_state import RoundResult, RunState
from tui.chart_lines import (
    CLIENT_COLORS,
    CLIENT_EVAL_COLOR,
    RUN_COLORS,
    SPREAD,
    SPREAD_COLORS,
    TRAIN_COLOR,
    ChartView,
    Line,
    LineOptions,
    points,
    run_color,
    spread,
)
from tui.chart_marks import minutes_of_round, rounds_of, with_history
from tui.format import many_clients

MEMORY_BINS = 200  # spans of the run's time over which many clients' memory is gathered


def loss_lines(states: list[RunState], names: list[str], options: LineOptions) -> list[Line]:
    """Central eval and aggregated train loss per round, and each client's train loss and own
    eval (with many clients, their spread); overlaid runs: each run's central eval."""
    if len(states) > 1:
        return [
            Line(f"{name}: central eval", *points(rounds_of(state), _eval), run_color(index))
            for index, (state, name) in enumerate(zip(states, names))
            if any(r.eval_loss is not None for r in state.rounds.values())
        ]
    if not states:
        return []
    state = states[0]
    rounds = rounds_of(state)
    lines = [
        Line(label, *points(rounds, value), color)
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
            lines.append(Line(f"client {client}", *points(rounds, _of(client, "train_loss")), grey))
            lines.append(
                Line(
                    f"client {client}: own eval",
                    *points(rounds, _of(client, "eval_loss")),
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
            *points(rounds, lambda r: sum(_client_rates(r).values()) or None),
            run_color(index),
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
                    *points(rounds, _rate_of(client)),
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
            both = points(rounds, lambda r: _mib((r.bytes_sent or 0) + (r.bytes_received or 0)))
            lines.append(Line(f"{name}: sent + received", *both, run_color(index)))
            continue
        lines += [
            Line("sent", *points(rounds, lambda r: _mib(r.bytes_sent)), RUN_COLORS[0]),
            Line("received", *points(rounds, lambda r: _mib(r.bytes_received)), TRAIN_COLOR),
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
                f"{name}: largest client", times, [max(v) for v in values], run_color(index)
            )
            lines.append(line)
        elif many_clients(state) and not options.client_lines:
            times, values = _binned(series.values())
            lines += [
                Line(f"clients: {label}", times, [pick(v) for v in values], SPREAD_COLORS[label])
                for label, pick in SPREAD
            ]
        else:
            lines += [
                Line(f"client {number}", xs, ys, RUN_COLORS[number % len(RUN_COLORS)])
                for number, (xs, ys) in series.items()
            ]
    return [line for line in lines if line.xs]


def pass_at_lines(states: list[RunState], names: list[str], options: LineOptions) -> list[Line]:
    """code_eval's pass@k per round it measured: pass@1, and every larger k it reports;
    overlaid runs: each run's pass@1."""
    lines = []
    for index, (state, name) in enumerate(zip(states, names)):
        rounds = rounds_of(state)
        ks = sorted({k for result in rounds for k in result.pass_at})
        for k in ks[:1] if len(states) > 1 else ks:
            label = f"{name}: pass@{k}" if len(states) > 1 else f"pass@{k}"
            color = run_color(index if len(states) > 1 else ks.index(k))
            lines.append(Line(label, *points(rounds, _pass_at(k)), color))
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
    ChartView(
        "pass_at",
        "pass@k",
        "pass@k per round (code_eval: the share of problems solved)",
        "round",
        "pass@k per round: waiting for code_eval (code_eval.enabled = true)",
        with_history(pass_at_lines),
    ),
)
VIEWS_BY_KEY = {view.key: view for view in VIEWS}


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # a diverged loss stays a (huge) number, not an overflow


def client_eval_median(rounds: list[RoundResult]) -> list[Line]:
    """The median of the clients' own eval losses each round (client_eval), where there are."""
    points = [
        (float(r.round), statistics.median(values))
        for r in rounds
        if (values := [v for v in r.client_eval_loss.values() if v is not None])
    ]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return [Line("clients: own eval, median", xs, ys, CLIENT_EVAL_COLOR)] if points else []


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


def _eval(result: RoundResult) -> float | None:
    return result.eval_loss


def _of(client: int, what: str) -> Callable[[RoundResult], float | None]:
    """A client's train loss or own eval loss in a round."""
    table = "client_train_loss" if what == "train_loss" else "client_eval_loss"
    return lambda result: getattr(result, table).get(client)


def _pass_at(k: int) -> Callable[[RoundResult], float | None]:
    return lambda result: result.pass_at.get(k)


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
