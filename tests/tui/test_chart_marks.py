"""How the chart tells a run's steering: a fork after its parent's rounds, the parent's rounds
before it dimmed as its history, and a labelled mark where each live change applied."""

import dataclasses

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.record.run_state import RunState
from tui.app import replay_app
from tui.chart_lines import LineOptions
from tui.chart_marks import HISTORY_COLOR, MARK_COLOR, minutes_of_round, round_offset, x_of_round
from tui.chart_views import VIEWS_BY_KEY
from tui.widgets.run_chart import RunChart

CONFIG = dataclasses.replace(RunConfig(), rounds=4).to_dict()


def run(run_id, losses, forked_from=None, changes=(), t0=1000.0):
    events = [dict(type_=ev.RUN_STARTED, run_id=run_id, config=CONFIG)]
    if forked_from:
        events[0]["forked_from"] = forked_from
    for number, loss in enumerate(losses):
        events += [
            dict(type_=ev.CONFIG_CHANGED, round=number, key=key, old=old, new=new)
            for at, key, old, new in changes
            if at == number
        ]
        if number:
            events.append(dict(type_=ev.ROUND_STARTED, round=number, clients=2))
        events.append(dict(type_=ev.ROUND_DONE, round=number, eval_loss=loss, train_loss=loss))
    return RunState.from_events(
        ev.stamp(ev.make(**e), now=t0 + 60 * i) for i, e in enumerate(events)
    )


def test_a_fork_is_drawn_after_its_parents_rounds_with_them_dimmed_before_it():
    parent = run("parent", [8.0, 7.0, 6.5, 6.8, 7.1])
    fork = run("fork", [6.5, 6.2, 6.0], forked_from={"run": "parent", "path": "/p", "round": 2})
    fork.parent = parent

    lines = VIEWS_BY_KEY["loss"].lines([fork], ["fork"], LineOptions(show_clients=False))
    by_label = {line.label: line for line in lines}

    history = by_label["before the fork: central eval"]
    assert (history.xs, history.ys, history.color) == (
        [0.0, 1.0, 2.0],
        [8.0, 7.0, 6.5],
        HISTORY_COLOR,
    )
    assert by_label["central eval"].xs == [2.0, 3.0, 4.0]  # its round 0 is the parent's round 2
    assert round_offset(fork) == 2


def test_overlaid_with_its_parent_a_fork_draws_no_second_history():
    parent = run("parent", [8.0, 7.0, 6.5])
    fork = run("fork", [6.5, 6.2], forked_from={"run": "parent", "path": "/p", "round": 2})
    fork.parent = parent

    lines = VIEWS_BY_KEY["loss"].lines([parent, fork], ["parent", "fork"], LineOptions())

    assert [line.label for line in lines] == ["parent: central eval", "fork: central eval"]
    assert lines[1].xs == [2.0, 3.0]


def test_a_fork_whose_parent_is_gone_starts_at_its_round_all_the_same():
    fork = run("fork", [6.5, 6.2], forked_from={"run": "gone", "path": "/gone", "round": 3})
    lines = VIEWS_BY_KEY["loss"].lines([fork], ["fork"], LineOptions(show_clients=False))
    assert [line.xs for line in lines][0] == [3.0, 4.0]


def test_changes_are_marked_where_they_applied_in_rounds_and_in_minutes():
    steered = run(
        "steered",
        [8.0, 7.0, 6.5, 6.8, 7.1],
        changes=[(3, "local_epochs", 3, 1), (3, "learning_rate", 1e-3, 5e-4)],
    )

    assert x_of_round(steered, 3) == 3.0
    # round 3 began at the run's 8th event (one a minute from the first)
    assert minutes_of_round(steered, 3) == 8.0
    assert minutes_of_round(steered, 9) is None  # a round that has not begun


async def test_the_chart_marks_every_change_in_every_view():
    steered = [
        ev.stamp(ev.make(**e), now=1000.0 + 60 * i)
        for i, e in enumerate(
            [
                dict(type_=ev.RUN_STARTED, run_id="s", config=CONFIG),
                dict(type_=ev.ROUND_DONE, round=0, eval_loss=8.0),
                dict(type_=ev.CONFIG_CHANGED, round=1, key="proximal_mu", old=0.1, new=1.0),
                dict(type_=ev.ROUND_STARTED, round=1, clients=2),
                dict(type_=ev.GPU_SAMPLE, devices=[], clients={"0": {"rss_bytes": 2 << 30}}),
                dict(type_=ev.ROUND_DONE, round=1, eval_loss=7.0, bytes_sent=9, bytes_received=9),
            ]
        )
    ]
    async with replay_app([("s", steered)]).run_test(size=(120, 40)) as pilot:
        chart = pilot.app.screen.query_one(RunChart)
        for key in ("loss", "perplexity", "throughput", "bytes", "memory"):
            chart.show_view(key)
            (mark,) = chart.marks()
            assert mark.label == "proximal_mu=1" and mark.color == MARK_COLOR, key
            # round 1 began 3 minutes into the run (an event a minute)
            assert mark.x == (1.0 if key != "memory" else 3.0), key
