"""A sweep in the TUI: members overlaid and compared as they run and finish, `s` stops the
sweep; a recorded sweep replays all its members."""

from textual.widgets import DataTable

from engine.core import events as ev
from engine.record.run_folders import read_run_events
from tests.factories import simple_run_events, write_run
from tests.tui.screens import answer
from tests.tui.scripted import ScriptedSweep
from tests.waiting import until
from tui import recorded as recorded_commands
from tui.app import launcher_app, replay_app, sweep_app
from tui.screens.launcher import LauncherScreen
from tui.screens.monitor import MonitorScreen
from tui.widgets.comparison_table import ComparisonTable
from tui.widgets.run_chart import RunChart
from tui.widgets.run_header import RunHeader

SIZE = (120, 40)
MEMBERS = ["proximal_mu=0.01", "proximal_mu=1.0"]


def rows(table: ComparisonTable) -> list[tuple[str, str]]:
    """(member, status) of each row."""
    return [
        (str(table.get_row_at(i)[0]).removeprefix("■ "), str(table.get_row_at(i)[2]))
        for i in range(table.row_count)
    ]


def play_member(sweep: ScriptedSweep, name: str, eval_losses: list[float], finish=True) -> None:
    run = sweep.runs[name]
    run.start()
    run.emit(ev.ROUND_DONE, round=0, eval_loss=8.3, seconds=0.5, eval_seconds=0.5)
    for number, eval_loss in enumerate(eval_losses, start=1):
        run.play_round(number, eval_loss)
    if finish:
        run.emit(ev.RUN_FINISHED, status="completed", rounds_completed=len(eval_losses))


async def test_members_fill_the_overlay_and_the_comparison_and_s_stops_the_sweep(tmp_path):
    sweep = ScriptedSweep(MEMBERS, tmp_path / "sweep")
    async with sweep_app(sweep, clock=None).run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        table = screen.query_one(ComparisonTable)
        chart = screen.query_one(RunChart)

        play_member(sweep, MEMBERS[0], [7.4, 7.1])
        await until(lambda: rows(table) == [(MEMBERS[0], "completed")])
        play_member(sweep, MEMBERS[1], [7.6], finish=False)
        await until(lambda: len(rows(table)) == 2)

        # the member running now leads: header, clients table, first row
        assert rows(table) == [(MEMBERS[1], "running"), (MEMBERS[0], "completed")]
        assert f"  {MEMBERS[1]}" in str(screen.query_one(RunHeader).render())
        await until(lambda: chart.up_to_date)
        assert chart.legend()[:2] == [f"{name}: central eval" for name in reversed(MEMBERS)]

        await pilot.press("s")
        await answer(pilot, "stop")
        await until(lambda: sweep.stop_requested)


async def test_a_sweep_offers_no_key_it_cannot_honour(tmp_path):
    sweep = ScriptedSweep(MEMBERS, tmp_path / "sweep")
    async with sweep_app(sweep, clock=None).run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        assert not screen.check_action("detach", ())
        assert not screen.check_action("toggle_early_stopping", ())
        assert screen.check_action("stop", ()) and screen.check_action("abort", ())
    assert sweep.aborted  # leaving the screen ends the members still running


def write_sweep(sweep_dir):
    """A recorded sweep of MEMBERS (final eval 6.4 and 6.9) in `sweep_dir`."""
    for name, final in zip(MEMBERS, (6.4, 6.9)):
        write_run(
            sweep_dir / name, simple_run_events(run_id=name, rounds=((8.0, None), (final, 7)))
        )
    (sweep_dir / "sweep.json").write_text(
        '{"sweep_id": "sweep", "grid": [["proximal_mu", ["0.01", "1.0"]]], "base": {}, '
        '"members": [{"name": "proximal_mu=0.01"}, {"name": "proximal_mu=1.0"}], '
        '"status": "completed"}'
    )


async def test_a_recorded_sweep_replays_every_member(tmp_path):
    sweep_dir = tmp_path / "sweep"
    write_sweep(sweep_dir)
    folders = recorded_commands._runs_of(sweep_dir)
    recorded = [(folder.name, read_run_events(folder)) for folder in folders]
    async with replay_app(recorded).run_test(size=SIZE) as pilot:
        chart = pilot.app.screen.query_one(RunChart)
        await until(lambda: chart.up_to_date)
        assert chart.legend()[:2] == [f"{name}: central eval" for name in MEMBERS]
        assert rows(pilot.app.screen.query_one(ComparisonTable)) == [
            (MEMBERS[0], "completed"),
            (MEMBERS[1], "completed"),
        ]


async def test_the_launcher_lists_a_sweeps_members_and_compares_them(tmp_path):
    write_sweep(tmp_path / "sweep")
    app = launcher_app([tmp_path], start_run=lambda config: None, clock=None)
    async with app.run_test(size=SIZE) as pilot:
        launcher = await until(lambda: isinstance(app.screen, LauncherScreen) and app.screen)
        table = launcher.query_one("#saved-runs", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert names == [f"sweep/{name}" for name in MEMBERS]
        await pilot.press("space", "down", "space", "c")
        monitor = await until(lambda: isinstance(app.screen, MonitorScreen) and app.screen)
        assert monitor.names == [f"sweep/{name}" for name in MEMBERS]
