"""What every chart view is made of: lines with their colours, the chart's toggles, a view's
declaration, and the helpers views share (points per round, the spread of many clients)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.record.run_state import RoundResult, RunState
from tui.chart_marks import x_of_round

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


def spread(
    rounds: list[RoundResult], values: Callable[[RoundResult], Iterable[float | None]], who: str
) -> list[Line]:
    """The max, median and min of `values` of each round (of the clients that have one)."""
    per_round = [(r.round, [v for v in values(r) if v is not None]) for r in rounds]
    per_round = [(number, found) for number, found in per_round if found]
    xs = [float(number) for number, _ in per_round]
    return [
        Line(f"{who}: {label}", xs, [pick(found) for _, found in per_round], SPREAD_COLORS[label])
        for label, pick in SPREAD
    ]


SPREAD: tuple[tuple[str, Callable[[list[float]], float]], ...] = (
    ("max", max),
    ("median", statistics.median),
    ("min", min),
)


def points(
    rounds: list[RoundResult], value: Callable[[RoundResult], float | None]
) -> tuple[list[float], list[float]]:
    """(rounds, values) of the rounds that have a value."""
    pairs = [(float(r.round), y) for r in rounds if (y := value(r)) is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def run_color(index: int) -> Color:
    return RUN_COLORS[index % len(RUN_COLORS)]
