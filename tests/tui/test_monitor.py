"""The monitor, driven as a user would: keys, dialogs, live and replayed runs."""

import threading
import time

import pytest

from engine.core import events as ev
from engine.core.config import EarlyStopping, RunConfig
from engine.record.run_folders import read_run_events, sample_runs_folder
from tests.factories import simple_run_events
from tests.tui.screens import answer, shown
from tests.tui.scripted import ScriptedRun
from tests.waiting import until
from tui.app import launcher_app, live_app, replay_app
from tui.chart_views import VIEWS
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.launcher import LauncherScreen
from tui.screens.monitor import MonitorScreen
from tui.screens.monitor_keys import LIVE_BINDINGS, REPLAY_BINDINGS, VIEW_BINDINGS
from tui.widgets.comparison_table import ComparisonTable
from tui.widgets.run_chart import REDRAW_INTERVAL_S, RunChart, legend_lines

SIZE = (120, 40)
SAMPLE_RUNS = sample_runs_folder()


def stamped(events):
    return [ev.stamp(ev.make(**e), now=1000.0 + 5 * i) for i, e in enumerate(events)]


async def settled(monitor):
    """Wait until the monitor shows everything that has arrived (and is the screen shown)."""
    await until(lambda: monitor.app.screen is monitor and monitor.settled)


async def test_launcher_starts_a_live_run_and_s_stops_it_after_the_round(tmp_path):
    scripted = ScriptedRun()
    configs = []

    def start_run(config):
        configs.append(config)
        return scripted

    app = launcher_app([tmp_path], start_run=start_run, clock=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("d")
        monitor = await shown(app, MonitorScreen)
        assert scripted.started
        assert configs[0].name == "default"

        scripted.play_until_training([7.5])
        await settled(monitor)
        assert monitor.live_state.clients[0].state == "training"
        assert monitor.live_state.rounds[1].eval_loss == 7.5

        await pilot.press("s")
        await answer(pilot, "stop")
        await until(lambda: scripted.stop_requested)
        await settled(monitor)
        assert monitor.live_state.status == "stopping"

        scripted.play_round(2, 7.1)  # the round in progress finishes, then the run ends
        scripted.emit(
            ev.RUN_FINISHED, status="stopped", rounds_completed=2, best_round=2, best_eval_loss=7.1
        )
        await settled(monitor)
        assert monitor.live_state.status == "stopped"
        assert sorted(monitor.live_state.rounds) == [0, 1, 2]
        assert "STOPPED" in str(monitor.query_one("#header").render())


async def test_cancelling_the_stop_dialog_keeps_the_run_going():
    scripted = ScriptedRun()
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        monitor = pilot.app.screen
        scripted.play_until_training([])
        await pilot.press("s")
        await shown(pilot.app, ConfirmScreen)
        await pilot.press("escape")
        await settled(monitor)
        assert not scripted.stop_requested
        assert monitor.live_state.status == "running"


async def test_abort_asks_then_ends_the_run():
    scripted = ScriptedRun()
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        monitor = pilot.app.screen
        scripted.play_until_training([7.4])
        await pilot.press("a")
        await answer(pilot, "abort")
        await until(lambda: scripted.aborted)
        await settled(monitor)
        assert monitor.live_state.status == "aborted"


async def test_quitting_a_live_run_asks_and_abort_quits():
    scripted = ScriptedRun()
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE) as pilot:
        scripted.play_until_training([7.4])
        await pilot.press("q")
        dialog = await shown(app, ConfirmScreen)
        assert [answer for answer, _ in dialog.answers] == ["detach", "stop", "abort", "watch"]
        await answer(pilot, "abort")
        await until(lambda: scripted.aborted)
    assert app.return_code in (0, None)


async def test_quitting_a_live_run_may_detach_and_leave_it_running():
    scripted = ScriptedRun()
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE) as pilot:
        scripted.play_until_training([7.4])
        await pilot.press("q")
        await answer(pilot, "detach")
        await until(lambda: scripted.detached)
    assert not scripted.aborted and not scripted.stop_requested


async def test_d_detaches_from_a_live_run_and_closes_the_monitor_only():
    scripted = ScriptedRun()
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE) as pilot:
        scripted.play_until_training([7.4])
        await pilot.press("d")
        await until(lambda: scripted.detached)
    assert not scripted.aborted  # leaving a detached run leaves it running


async def test_leaving_the_app_with_a_live_run_aborts_it():
    scripted = ScriptedRun()
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        scripted.play_until_training([7.4])
        await settled(pilot.app.screen)
        assert not scripted.aborted
        pilot.app.exit()
    assert scripted.aborted


async def test_replay_opens_at_the_end_and_steps_plays_and_jumps(tmp_path):
    events = stamped(simple_run_events(rounds=((8.0, None), (7.0, 7.5), (6.5, 6.9), (6.4, 6.6))))
    app = replay_app([("r1", events)])
    async with app.run_test(size=SIZE) as pilot:
        monitor = app.screen
        player = monitor.players[0]
        await settled(monitor)
        assert player.at_end and monitor.states[0].status == "completed"

        await pilot.press("left")
        await settled(monitor)
        assert player.state.rounds_completed == 3 and not player.at_end
        await pilot.press("left", "left")
        await settled(monitor)
        assert player.state.rounds_completed == 1
        await pilot.press("right")
        await settled(monitor)
        assert player.state.rounds_completed == 2

        await pilot.press("end")
        await settled(monitor)
        assert player.at_end

        for _ in range(6):  # 1x: the recorded 5 s between events outlast the key presses
            await pilot.press("minus")
        assert player.speed_label == "1x"
        await pilot.press("space")  # at the end, play starts over
        assert player.playing and player.state.rounds_completed == 0
        await pilot.press("space")
        assert not player.playing
        for _ in range(12):
            await pilot.press("plus")
        assert player.speed_label == "max"
        assert not player.at_end
        await pilot.press("space")  # plays on from where it was paused, to the end
        await until(lambda: not player.playing)
        assert player.at_end


async def test_three_runs_overlay_with_a_legend_and_a_comparison_table():
    runs = {
        "fedprox-mu0.1": ((8.0, None), (7.0, 7.5), (6.8, 6.9), (6.9, 6.6)),
        "fedavg": ((8.0, None), (6.5, 7.2), (6.9, 6.7), (7.3, 6.4)),
        "fedavgm": ((8.0, None), (7.4, 7.6), (7.1, 7.0), (6.7, 6.8)),
    }
    recorded = [
        (name, stamped(simple_run_events(run_id=name, rounds=rounds)))
        for name, rounds in runs.items()
    ]
    app = replay_app(recorded)
    async with app.run_test(size=SIZE):
        await settled(app.screen)
        assert app.screen.query_one(RunChart).legend() == [
            "fedprox-mu0.1: central eval",
            "fedavg: central eval",
            "fedavgm: central eval",
            "best: round 2",
        ]
        table = app.screen.query_one(ComparisonTable)
        rows = [table.get_row_at(row) for row in range(table.row_count)]
        assert [str(row[0]) for row in rows] == ["■ fedprox-mu0.1", "■ fedavg", "■ fedavgm"]
        assert [str(row[4]) for row in rows] == ["2", "1", "3"]  # best rounds
        assert [str(row[5]) for row in rows] == ["6.8000", "6.5000", "6.7000"]


async def test_chart_keys_toggle_log_scale_smoothing_and_client_lines():
    events = stamped(simple_run_events())
    async with replay_app([("r1", events)]).run_test(size=SIZE) as pilot:
        chart = pilot.app.screen.query_one(RunChart)
        assert "client 0" in chart.legend()
        await pilot.press("l", "m", "c")
        assert (chart.log_y, chart.smoothing, chart.show_clients) == (True, True, False)
        assert "client 0" not in chart.legend()


async def test_number_keys_switch_the_chart_between_its_views():
    events = stamped(simple_run_events())
    async with replay_app([("r1", events)]).run_test(size=SIZE) as pilot:
        chart = pilot.app.screen.query_one(RunChart)
        await pilot.press("2")
        assert chart.view.key == "perplexity"
        assert "best: round 2" in chart.legend()  # marked where eval loss is, as in loss
        await pilot.press("4")
        assert (chart.view.key, chart.legend()) == ("bytes", ["sent", "received"])
        await pilot.press("3", "c")  # client lines apply to every view
        assert chart.view.key == "throughput" and chart.legend() == ["all clients (est.)"]
        await pilot.press("5")
        assert chart.view.key == "memory"
        await pilot.press("1")
        assert chart.view.key == "loss" and chart.legend()[0] == "central eval"


async def test_help_lists_the_screens_keys():
    async with replay_app([("r1", stamped(simple_run_events()))]).run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        help_screen = await shown(pilot.app, HelpScreen)
        descriptions = [description for _, description, _ in help_screen.rows()]
        assert "Play/pause" in descriptions and "Log-Y" in descriptions
        assert "Perplexity chart" in descriptions and "Memory chart" in descriptions
        assert "Stop after round" not in descriptions  # a replay cannot be stopped
        assert "Patience +1" not in descriptions


def palette(app):
    """The command palette's entries (ctrl+p) for the screen shown, by title."""
    return {command.title: command for command in app.get_system_commands(app.screen)}


def titles(bindings):
    return {binding.description for binding in bindings}


async def test_the_palette_offers_every_key_of_a_live_run_and_no_replay_key():
    async with live_app(ScriptedRun(), clock=None).run_test(size=SIZE) as pilot:
        await settled(pilot.app.screen)
        offered = palette(pilot.app)
        assert titles(LIVE_BINDINGS + VIEW_BINDINGS) <= set(offered)
        assert not titles(REPLAY_BINDINGS) & set(offered)
        assert all(offered[title].help for title in titles(LIVE_BINDINGS + VIEW_BINDINGS))


async def test_the_palette_offers_every_key_of_a_replay_and_runs_it():
    app = replay_app([("r1", stamped(simple_run_events()))])
    async with app.run_test(size=SIZE):
        await settled(app.screen)
        offered = palette(app)
        assert titles(REPLAY_BINDINGS + VIEW_BINDINGS) <= set(offered)
        assert {"Faster", "Slower"} <= set(offered)
        assert not titles(LIVE_BINDINGS) & set(offered)
        player = app.screen.players[0]
        before = player.speed
        await offered["Faster"].callback()
        assert player.speed > before


async def test_the_palette_offers_every_key_of_the_launcher(tmp_path):
    app = launcher_app([tmp_path], start_run=lambda config: None, clock=None)
    async with app.run_test(size=SIZE):
        await shown(app, LauncherScreen)
        assert titles(LauncherScreen.BINDINGS) <= set(palette(app))


async def test_quit_from_the_palette_asks_before_ending_a_live_run():
    """The screen's Quit replaces Textual's, which would end the run without asking."""
    scripted = ScriptedRun()
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE):
        scripted.play_until_training([7.4])
        await settled(app.screen)
        commands = list(app.get_system_commands(app.screen))
        assert [command.title for command in commands].count("Quit") == 1
        await palette(app)["Quit"].callback()
        await shown(app, ConfirmScreen)
        assert not scripted.aborted


async def test_a_thousand_events_a_second_keep_keys_responsive_and_redraws_throttled():
    scripted = ScriptedRun(config=RunConfig(rounds=1000, num_clients=4))
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE):
        monitor = app.screen
        chart = monitor.query_one(RunChart)
        await settled(monitor)
        stop = threading.Event()
        sent = [0]

        def flood():  # 1,000 events per second from an engine thread, 3,000 in all
            number = 0
            while not stop.is_set() and sent[0] < 3000:
                started = time.monotonic()
                for _ in range(100):
                    number += 1
                    if number % 50 == 0:
                        scripted.emit(
                            ev.ROUND_DONE,
                            0.001,
                            round=number // 50,
                            eval_loss=8 - number / 1e4,
                            train_loss=8.1 - number / 1e4,
                        )
                    else:
                        scripted.emit(
                            ev.CLIENT_PROGRESS,
                            0.001,
                            round=number // 50 + 1,
                            client=number % 4,
                            step=number % 50,
                            steps_total=50,
                            loss=7.0,
                        )
                    sent[0] += 1
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))  # the pace, not a wait

        async def seconds_until_handled(key, option):
            """From the key press to its action. Not Pilot.press: that also waits for the
            process to go idle, which a flooded one does not (up to a second per wait)."""
            before = getattr(chart, option)
            pressed = time.monotonic()
            app.simulate_key(key)
            await until(lambda: getattr(chart, option) is not before)
            return time.monotonic() - pressed

        producer = threading.Thread(target=flood)
        flood_started = time.monotonic()
        renders_before = chart.renders
        producer.start()
        try:
            latencies = []
            for sent_before, option, key in (
                (500, "log_y", "l"),
                (1500, "smoothing", "m"),
                (2500, "show_clients", "c"),
            ):
                await until(lambda sent_before=sent_before: sent[0] >= sent_before)
                latencies.append(await seconds_until_handled(key, option))
            await until(lambda: not producer.is_alive())
        finally:
            stop.set()
        await settled(monitor)
        assert monitor.live_state.rounds_completed == 60
        # the chart redraws on its own clock (and once per key), never per event or round
        ticks = (time.monotonic() - flood_started) / REDRAW_INTERVAL_S
        assert chart.renders - renders_before <= ticks + 1 + len(latencies)
        # a key waits for at most a drain and a redraw; a backlog of the flood would take
        # seconds (2 s: room for a loaded 2-core machine, where it takes ~0.2 s)
        assert max(latencies) < 2.0, latencies


async def test_early_stopping_keys_change_the_run_and_the_header_shows_its_answer():
    config = RunConfig(rounds=5, early_stopping=EarlyStopping(enabled=True, patience=2))
    scripted = ScriptedRun(config=config)
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        monitor = pilot.app.screen
        scripted.play_until_training([7.5])
        await settled(monitor)
        header = monitor.query_one("#header")
        assert "early stop: on, patience 2, 0 rounds without improvement" in str(header.render())

        await pilot.press("right_square_bracket")
        await until(lambda: scripted.config.early_stopping.patience == 3)
        await settled(monitor)
        assert "early stop: on, patience 3" in str(header.render())
        await pilot.press("e")
        await until(lambda: not scripted.config.early_stopping.enabled)
        await settled(monitor)
        assert "early stop: off" in str(header.render())
        said = str(header.render())
        assert "changed from round 3: " in said and "early_stopping.enabled true→false" in said


async def test_ctrl_s_saves_an_svg_of_the_screen_into_the_run_folder(tmp_path):
    app = replay_app([("r1", stamped(simple_run_events()))], folder=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app.screen)
        await pilot.press("ctrl+s")
        await until(lambda: list(tmp_path.glob("screenshot-*.svg")))
    (svg,) = tmp_path.glob("screenshot-*.svg")
    assert svg.read_text().lstrip().startswith("<svg") and "COMPLETED" in svg.read_text()


async def test_ctrl_s_on_a_sample_run_saves_into_the_current_directory_not_the_package(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    sample = SAMPLE_RUNS / "fedavg"
    app = replay_app([("fedavg", ev.read_events(sample / "events.jsonl"))], folder=sample)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app.screen)
        await pilot.press("ctrl+s")
        await until(lambda: list(tmp_path.glob("screenshot-*.svg")))
    assert list(sample.glob("screenshot-*")) == []


@pytest.mark.parametrize(
    "run",
    sorted(str(p.parent.relative_to(SAMPLE_RUNS)) for p in SAMPLE_RUNS.glob("**/events.jsonl")),
)
async def test_every_sample_run_plays_in_the_monitor_and_draws_every_chart_view(run):
    events = read_run_events(SAMPLE_RUNS / run)
    app = replay_app([(run, events)])
    async with app.run_test(size=SIZE) as pilot:
        monitor = app.screen
        player = monitor.players[0]
        await settled(monitor)
        await pilot.press("space")  # play it from the start, faster and faster, drawing it
        for _ in range(4):  # from 64x
            await pilot.press("plus")
        assert player.speed_label == "max"
        await settled(monitor)
        assert player.at_end and monitor.states[0].finished
        chart = monitor.query_one(RunChart)
        for number, view in enumerate(VIEWS, start=1):
            await pilot.press(str(number))
            await settled(monitor)
            assert chart.view is view
        assert app.return_code is None  # no crash while drawing any of it


async def test_a_diverged_run_replays_with_its_missing_numbers_left_out():
    events = stamped(
        simple_run_events(rounds=((8.0, None), (7.0, 7.5), (float("nan"), float("inf"))))
    )
    assert events[-2]["eval_loss"] is None  # recorded as null
    app = replay_app([("diverged", events)])
    async with app.run_test(size=SIZE):
        await settled(app.screen)
        assert app.screen.states[0].finished and app.return_code is None
        assert "central eval" in app.screen.query_one(RunChart).legend()


async def test_the_header_says_how_non_iid_the_clients_data_is():
    scripted = ScriptedRun()
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        scripted.emit(
            ev.PARTITION_SUMMARY,
            partition="dirichlet",
            clients=[
                {"client": 0, "samples": 64, "sources": 1, "largest_source_share": 1.0},
                {"client": 1, "samples": 64, "sources": 4, "largest_source_share": 0.55},
            ],
        )
        await settled(pilot.app.screen)
        header = str(pilot.app.screen.query_one("#header").render())
        assert "dirichlet: 1-4 sources a client (the largest 55-100% of its samples)" in header


async def test_the_chart_draws_each_clients_own_eval_beside_central_eval():
    scripted = ScriptedRun()
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        scripted.play_until_training([7.4, 7.0])
        for number, losses in ((1, (7.5, 7.9)), (2, (7.1, 7.6))):
            for client, value in enumerate(losses):
                scripted.emit(
                    ev.CLIENT_EVAL, round=number, client=client, eval_loss=value, examples=3
                )
        chart = pilot.app.screen.query_one(RunChart)
        await settled(pilot.app.screen)
        series = {line.label: line.ys for line in chart.lines()}
        assert series["client 0: own eval"] == [7.5, 7.1]
        assert series["client 1: own eval"] == [7.9, 7.6]


async def test_the_legend_sits_above_the_plot_not_on_its_data():
    async with replay_app([("r1", stamped(simple_run_events()))]).run_test(size=SIZE) as pilot:
        chart = pilot.app.screen.query_one(RunChart)
        await settled(pilot.app.screen)
        lines = chart.render().plain.splitlines()
        plot_top = next(i for i, line in enumerate(lines) if "┌" in line)
        legend = "\n".join(lines[:plot_top])
        assert "━━ central eval" in legend and "━━ client 0" in legend and "◆ best: round" in legend
        assert not any("central eval" in line or "best:" in line for line in lines[plot_top:])


def test_a_legend_wider_than_the_chart_wraps_onto_more_lines():
    entries = [("━━", f"client {n}", 245) for n in range(12)]
    lines = legend_lines(entries, width=40)
    assert len(lines) > 1 and all(line.cell_len <= 40 for line in lines)
    assert " ".join(line.plain for line in lines).count("client") == 12
