"""A client whose process dies mid-run, as the monitor shows it live and in a replay."""

import dataclasses

from rich.style import Style

from engine.core import events as ev
from engine.core.config import RunConfig
from tests.tui.scripted import ScriptedRun
from tests.waiting import until
from tui.app import live_app, replay_app
from tui.widgets.clients_table import ClientsTable

SIZE = (120, 40)


def scripted_run() -> ScriptedRun:
    config = dataclasses.replace(RunConfig(), name="scripted", rounds=3, min_clients=1)
    return ScriptedRun(config=config)


def finish_round_2_with_client_0_alone(scripted: ScriptedRun) -> None:
    scripted.emit(ev.CLIENT_PROGRESS, round=2, client=0, step=32, steps_total=32, loss=6.0)
    scripted.emit(ev.CLIENT_ROUND_DONE, round=2, client=0, train_loss=6.0, examples=256, steps=32)
    scripted.emit(ev.ROUND_DONE, round=2, eval_loss=7.1, train_loss=6.0, seconds=12.0)


def state_cell(app, client: int):
    return app.screen.query_one(ClientsTable).get_cell(str(client), "state")


def header(app) -> str:
    return str(app.screen.query_one("#header").render())


def shows_state(app, client: int, state: str) -> bool:
    table = app.screen.query_one(ClientsTable)
    return str(client) in table.rows and state_cell(app, client).plain == state


async def test_a_crashed_client_shows_restarting_then_waiting_then_training():
    scripted = scripted_run()
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE):
        scripted.play_until_training([7.4])  # round 2 under way
        await until(lambda: shows_state(app, 1, "training"))

        scripted.crash_client(1, round_=2, restarting=True)
        await until(lambda: shows_state(app, 1, "restarting"))
        assert Style.parse(str(state_cell(app, 1).style)).color.name == "yellow"
        assert shows_state(app, 0, "training")  # the other client goes on
        assert "client 1 restarting: worker exited with code -9 in round 2" in header(app)
        assert "1 error(s)/warning(s)" in header(app)  # the ServerApp's error for the reply

        finish_round_2_with_client_0_alone(scripted)
        scripted.restart_client(1)
        await until(lambda: shows_state(app, 1, "waiting"))
        assert (
            "1 client crash, restarted (last: client 1's worker exited with code -9 in round 2)"
            in header(app)
        )
        assert "client 1 restarting" not in header(app)

        scripted.emit(ev.ROUND_STARTED, round=3, clients=2)
        scripted.emit(ev.CLIENT_PROGRESS, round=3, client=1, step=4, steps_total=32, loss=6.2)
        await until(lambda: shows_state(app, 1, "training"))


async def test_a_client_that_is_not_restarted_shows_crashed_in_red_to_the_end():
    scripted = scripted_run()
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE):
        scripted.play_until_training([7.4])
        scripted.crash_client(1, round_=2, restarting=False)
        finish_round_2_with_client_0_alone(scripted)
        scripted.play_round(3, 6.9, client_losses=(6.0,))
        scripted.emit(ev.RUN_FINISHED, status="completed", rounds_completed=3)
        await until(lambda: "COMPLETED" in header(app))

        assert shows_state(app, 1, "crashed") and shows_state(app, 0, "done")
        assert Style.parse(str(state_cell(app, 1).style)).bgcolor.name == "red"
        assert "client 1 crashed: worker exited with code -9 in round 2" in header(app)


async def test_a_replay_shows_the_crash_and_restart_as_they_were_live():
    scripted = scripted_run()
    recorded: list[ev.Event] = []
    scripted.subscribe(recorded.append)
    scripted.start()
    scripted.play_until_training([7.4])
    scripted.crash_client(1, round_=2, restarting=True)
    finish_round_2_with_client_0_alone(scripted)
    scripted.restart_client(1)
    scripted.play_round(3, 6.9)
    scripted.emit(ev.RUN_FINISHED, status="completed", rounds_completed=3)

    app = replay_app([("crashed-worker", recorded)])
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "COMPLETED" in header(app))
        assert shows_state(app, 0, "done") and shows_state(app, 1, "done")
        assert "1 client crash, restarted" in header(app)

        await pilot.press("left", "left")  # back to the end of round 2: not restarted yet
        await until(lambda: shows_state(app, 1, "restarting"))
        assert "client 1 restarting: worker exited with code -9 in round 2" in header(app)
