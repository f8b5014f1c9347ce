"""What the screens look like at 120x40, from fixed data (no clocks, no network, UTC)."""

import dataclasses
from pathlib import Path

import pytest

from engine.core import events as ev
from engine.core.config import RunConfig
from tests.factories import simple_run_events, write_run
from tests.tui.scripted import ScriptedRun
from tests.waiting import until
from tui.app import launcher_app, live_app, replay_app
from tui.chart_views import VIEWS

SIZE = (120, 40)


async def monitor_settled(pilot):
    """Until the monitor has drawn everything it was given (its chart included)."""
    monitor = pilot.app.screen
    await until(lambda: monitor.settled)


def test_launcher(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_run(
        tmp_path / "sample_runs" / "seed-fedprox-mu0.1",
        simple_run_events(run_id="seed", rounds=((2.987, None), (2.076, 2.0715), (2.027, 2.0271))),
    )
    write_run(tmp_path / "runs" / "20261125-101500-default", simple_run_events(status="stopped"))
    app = launcher_app(
        [Path("sample_runs"), Path("runs")], start_run=lambda config: None, clock=None
    )
    assert snap_compare(app, terminal_size=SIZE)


def test_monitor_mid_run(snap_compare):
    scripted = ScriptedRun()

    async def two_rounds_then_training(pilot):
        scripted.play_until_training([7.4, 7.0])
        await monitor_settled(pilot)

    assert snap_compare(
        live_app(scripted, clock=None), terminal_size=SIZE, run_before=two_rounds_then_training
    )


@pytest.mark.parametrize("number,view", [(n, v.key) for n, v in enumerate(VIEWS, start=1)])
def test_each_chart_view_of_a_run_in_its_fifth_round(snap_compare, number, view):
    scripted = ScriptedRun(dataclasses.replace(RunConfig(), name="views", rounds=6))

    async def four_rounds_then_the_view(pilot):
        scripted.emit(ev.ROUND_DONE, round=0, eval_loss=8.3, seconds=0.5, eval_seconds=0.5)
        for number_, eval_loss in enumerate((7.4, 6.9, 6.7, 6.8), start=1):
            for used in (4 + 3 * number_, 9 + 3 * number_):
                scripted.sample_gpu(used, rss_gib=1.5 + 0.2 * number_)
            scripted.play_round(number_, eval_loss, (eval_loss + 0.3, eval_loss + 0.1))
            solved = (0.05, 0.1, 0.15, 0.125)[number_ - 1]
            scripted.emit(
                ev.CODE_EVAL, round=number_, pass_at={"1": solved, "5": min(1.0, 2.5 * solved)}
            )
        scripted.emit(ev.ROUND_STARTED, round=5, clients=2)
        await pilot.press(str(number))
        await monitor_settled(pilot)

    assert snap_compare(
        live_app(scripted, clock=None), terminal_size=SIZE, run_before=four_rounds_then_the_view
    )


def test_monitor_of_twenty_virtual_clients_four_a_round(snap_compare):
    scripted = ScriptedRun(
        dataclasses.replace(
            RunConfig(),
            name="simulated",
            num_clients=20,
            clients_per_round=4,
            rounds=4,
            backend="simulation",
        )
    )

    async def three_rounds_then_training(pilot):
        scripted.emit(ev.ROUND_DONE, round=0, eval_loss=8.3, seconds=0.5, eval_seconds=0.5)
        for number, sampled in enumerate(([2, 7, 11, 16], [0, 5, 7, 19], [3, 8, 12, 14]), 1):
            losses = [7.6 - 0.4 * number + 0.15 * i for i in range(4)]
            scripted.play_round(number, 7.9 - 0.4 * number, losses, sampled=sampled)
        scripted.emit(ev.ROUND_STARTED, round=4, clients=4, sampled=[1, 6, 9, 13])
        scripted.emit(ev.CLIENT_PROGRESS, round=4, client=6, step=9, steps_total=32, loss=6.3)
        await monitor_settled(pilot)

    assert snap_compare(
        live_app(scripted, clock=None), terminal_size=SIZE, run_before=three_rounds_then_training
    )


def test_finished_replay_of_two_runs(snap_compare):
    first = [
        ev.stamp(ev.make(**e), now=1000.0 + 5 * i)
        for i, e in enumerate(
            simple_run_events(run_id="a", rounds=((8.0, None), (7.0, 7.5), (6.6, 6.9), (6.7, 6.5)))
        )
    ]
    second = [
        ev.stamp(ev.make(**e), now=1000.0 + 6 * i)
        for i, e in enumerate(
            simple_run_events(run_id="b", rounds=((8.0, None), (7.2, 7.6), (6.9, 7.0), (6.8, 6.8)))
        )
    ]

    assert snap_compare(
        replay_app([("fedprox-mu0.1", first), ("fedavg", second)]),
        terminal_size=SIZE,
        run_before=monitor_settled,
    )


def test_replay_of_a_run_changed_twice_while_it_ran(snap_compare):
    """The seed's story: eval loss turns up, local epochs go down from round 3, then mu up from
    round 5; each change is marked where it applied."""
    config = dataclasses.replace(RunConfig(), name="steered", rounds=6, local_epochs=3)
    events = [dict(type_=ev.RUN_STARTED, run_id="steered", config=config.to_dict())]
    losses = [(8.3, None), (7.2, 7.4), (6.9, 7.0), (7.0, 6.7), (6.8, 6.8), (6.6, 6.7), (6.5, 6.6)]
    changes = {
        3: [("local_epochs", 3, 1), ("learning_rate", 0.001, 0.0005)],
        5: [("proximal_mu", 0.1, 1.0)],
    }
    for number, (eval_loss, train_loss) in enumerate(losses):
        for key, old, new in changes.get(number, []):
            events.append(dict(type_=ev.CONFIG_CHANGED, round=number, key=key, old=old, new=new))
        if number:
            events.append(dict(type_=ev.ROUND_STARTED, round=number, clients=2))
        events.append(
            dict(type_=ev.ROUND_DONE, round=number, eval_loss=eval_loss, train_loss=train_loss)
        )
    events.append(dict(type_=ev.RUN_FINISHED, status="completed", best_round=6, best_eval_loss=6.5))
    stamped = [ev.stamp(ev.make(**e), now=1000.0 + 10 * i) for i, e in enumerate(events)]

    assert snap_compare(
        replay_app([("steered", stamped)]), terminal_size=SIZE, run_before=monitor_settled
    )
