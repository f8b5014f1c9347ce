"""What the screens look like at 120x40, from fixed data (no clocks, no network, UTC)."""

from pathlib import Path

from engine import events as ev
from tests.factories import simple_run_events, write_run
from tests.tui.scripted import ScriptedRun
from tests.waiting import until
from tui.app import launcher_app, live_app, replay_app

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
