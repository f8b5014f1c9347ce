"""Steering a live run from the monitor: the form that changes it from its next round, holding
and going on, and how the header and the chart show what changed."""

from contextlib import asynccontextmanager

from textual.widgets import Input, Static

from engine.core import events as ev
from engine.core.config import RunConfig
from tests.tui.screens import shown
from tests.tui.scripted import ScriptedRun
from tests.tui.test_monitor import SIZE, settled
from tests.waiting import until
from tui.app import live_app
from tui.screens.config_form import ConfigFormScreen
from tui.screens.monitor import MonitorScreen
from tui.widgets.run_chart import RunChart


async def open_form(pilot) -> ConfigFormScreen:
    await pilot.press("f")
    return await shown(pilot.app, ConfigFormScreen)


async def submit(pilot, form: ConfigFormScreen, text: str) -> None:
    field = form.query_one("#changes", Input)
    field.value = text
    await pilot.press("enter")


def said(form: ConfigFormScreen) -> str:
    return str(form.query_one("#form-message", Static).render())


@asynccontextmanager
async def form_of_a_training_run(config: RunConfig):
    """The form, opened while round 2 of a scripted run with `config` trains."""
    scripted = ScriptedRun(config=config)
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        scripted.play_until_training([7.5])
        await settled(pilot.app.screen)
        yield scripted, pilot, await open_form(pilot)


async def test_the_form_lists_the_live_keys_with_their_values_and_help():
    config = RunConfig(rounds=4, learning_rate=2e-3)
    async with form_of_a_training_run(config) as (scripted, pilot, form):
        table = form.query_one("#live-keys")

        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}
        assert rows["learning_rate"][1] == "0.002" and "AdamW" in str(rows["learning_rate"][3])
        assert "early_stopping.patience" in rows and "model" not in rows and "seq_len" not in rows

        await pilot.press("escape")  # leaves, changing nothing
        await shown(pilot.app, MonitorScreen)
        assert scripted.config.learning_rate == 2e-3


async def test_a_change_from_the_form_applies_from_the_next_round_and_shows_on_screen():
    scripted = ScriptedRun(config=RunConfig(rounds=4))
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        monitor = pilot.app.screen
        scripted.play_until_training([7.5])  # round 2 is training
        await settled(monitor)

        form = await open_form(pilot)
        await submit(pilot, form, "local_epochs=2 learning_rate=5e-4")
        await shown(pilot.app, MonitorScreen)
        await settled(monitor)

        assert (scripted.config.local_epochs, scripted.config.learning_rate) == (2, 5e-4)
        header = str(monitor.query_one("#header").render())
        assert "changed from round 3: local_epochs 1→2, learning_rate 0.001→0.0005" in header
        chart = monitor.query_one(RunChart)
        assert "from round 3: local_epochs=2, learning_rate=0.0005" in chart.legend()
        assert [(mark.x, mark.label) for mark in chart.marks()] == [
            (3.0, "local_epochs=2, learning_rate=0.0005")
        ]


async def test_the_form_refuses_a_bad_value_and_a_frozen_key_saying_why_and_stays_open():
    async with form_of_a_training_run(RunConfig(rounds=4)) as (scripted, pilot, form):
        await submit(pilot, form, "learning_rate=-1")
        await until(lambda: "must be > 0" in said(form))
        assert said(form) == "config key 'learning_rate' must be > 0, got -1.0"

        await submit(pilot, form, "model=facebook/opt-350m")
        await until(lambda: "cannot change in a live run" in said(form))
        assert said(form).startswith("model cannot change in a live run: it fixed the model")

        assert pilot.app.screen is form  # still open, nothing changed
        assert scripted.config == RunConfig(rounds=4)


async def test_picking_a_key_in_the_form_offers_its_value_to_edit():
    async with form_of_a_training_run(RunConfig(rounds=4)) as (_, pilot, form):
        table = form.query_one("#live-keys")
        table.focus()
        keys = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        table.move_cursor(row=keys.index("proximal_mu"))
        await pilot.press("enter")
        await until(lambda: form.query_one("#changes", Input).value == "proximal_mu=0.1")


async def test_h_holds_after_the_round_and_again_goes_on():
    scripted = ScriptedRun(config=RunConfig(rounds=4))
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        monitor = pilot.app.screen
        scripted.play_until_training([7.5])
        await settled(monitor)

        await pilot.press("h")
        await until(lambda: scripted.holding)
        scripted.emit(ev.ROUND_DONE, round=2, eval_loss=7.2)
        scripted.emit(ev.HELD, round=2)
        await settled(monitor)
        header = str(monitor.query_one("#header").render())
        assert " HELD " in header and "held after round 2: nothing trains" in header

        await pilot.press("h")
        await until(lambda: not scripted.holding)
        scripted.emit(ev.CONTINUED, round=2, seconds=30.0)
        await settled(monitor)
        assert " RUNNING " in str(monitor.query_one("#header").render())
