"""What the chart draws about a run's steering: a fork's rounds after its parent's, with the
parent's rounds before them as its history (dimmed), and a labelled mark at each round from
which a live change applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from engine.core.describe import setting
from engine.record.run_state import RoundResult, RunState

HISTORY_COLOR = 240  # a dim grey: what the parent did before the fork
MARK_COLOR = (200, 200, 120)


@dataclass(frozen=True)
class Mark:
    x: float
    label: str
    color: tuple[int, int, int] | int


def round_offset(state: RunState) -> int:
    """Where a run's round 0 stands on the chart's round axis: a fork's round 0 is its parent's
    round it started from (and so on, for a fork of a fork)."""
    if not state.forked_from:
        return 0
    parent = state.parent
    return state.forked_from["round"] + (round_offset(parent) if parent is not None else 0)


def rounds_of(state: RunState, first: int = 0) -> list[RoundResult]:
    """The run's rounds from its round `first` on, in order, numbered as the chart places them."""
    offset = round_offset(state)
    return [
        dataclasses.replace(result, round=number + offset) if offset else result
        for number, result in sorted(state.rounds.items())
        if number >= first
    ]


def history(state: RunState) -> RunState | None:
    """A fork's parent as far as the fork's round 0 (None when the run is no fork, or its
    parent's record could not be read)."""
    if not state.forked_from or state.parent is None:
        return None
    upto = state.forked_from["round"]
    parent = state.parent
    return dataclasses.replace(
        parent, rounds={number: r for number, r in parent.rounds.items() if number <= upto}
    )


def with_history(lines: Callable) -> Callable:
    """A view's lines, and before them each fork's parent's, dimmed and labelled as history: all
    of them for a fork shown alone; beside other runs, the parent's first line (central eval,
    all clients' tokens/s, ...), unless the parent is shown itself."""

    def view(states, names, options):
        shown = {state.run_id for state in states}
        drawn = []
        for state, name in zip(states, names):
            parent = history(state)
            if parent is None or (len(states) > 1 and parent.run_id in shown):
                continue
            if len(states) == 1:
                before = lines([parent], [name], options)
            else:
                before = lines([parent], [name], dataclasses.replace(options, show_clients=False))[
                    :1
                ]
            who = f"{name}: " if len(states) > 1 else ""
            drawn += [
                dataclasses.replace(
                    line, label=f"{who}before the fork: {line.label}", color=HISTORY_COLOR
                )
                for line in before
            ]
        return drawn + lines(states, names, options)

    return view


def change_marks(
    states: list[RunState], x_of_round: Callable[[RunState, int], float | None], colors: list
) -> list[Mark]:
    """A mark at each round from which live changes applied, labelled with them: "from round
    3: local_epochs=2, learning_rate=0.0005"."""
    marks = []
    for state, color in zip(states, colors):
        by_round: dict[int, list[str]] = {}
        for change in state.config_history.changes:
            short = change.key.rpartition(".")[2]
            by_round.setdefault(change.round, []).append(f"{short}={setting(change.new)}")
        for number, said in sorted(by_round.items()):
            x = x_of_round(state, number)
            if x is not None:
                marks.append(Mark(x, ", ".join(said), color if len(states) > 1 else MARK_COLOR))
    return marks


def x_of_round(state: RunState, number: int) -> float:
    """Where round `number` stands on a per-round chart."""
    return float(number + round_offset(state))


def minutes_of_round(state: RunState, number: int) -> float | None:
    """Where round `number` began on a chart over the run's minutes (None until it began)."""
    result = state.rounds.get(number)
    if result is None or result.started_at is None or state.started_at is None:
        return None
    return (result.started_at - state.started_at) / 60
