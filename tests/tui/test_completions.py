"""The samples screen (`w`): what the global model wrote after each round, one round at a time."""

from textual.widgets import Label, Static

from engine.core import events as ev
from engine.core.config import RunConfig
from tests.tui.screens import shown
from tests.tui.scripted import ScriptedRun
from tests.tui.test_monitor import SIZE, settled
from tests.waiting import until
from tui.app import live_app
from tui.screens.completions import CompletionsScreen
from tui.screens.monitor import MonitorScreen


def wrote(screen: CompletionsScreen) -> tuple[str, str]:
    title = str(screen.query_one("#question", Label).render())
    return title, str(screen.query_one("#completions", Static).render())


async def test_w_shows_the_latest_rounds_completions_and_arrows_go_back_and_forth():
    scripted = ScriptedRun(config=RunConfig(rounds=4))
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        for number in (0, 1):
            completion = f"    return {number}  # round {number}\x1b]52;c;b3duZWQ=\x07\n"
            scripted.emit(
                ev.GENERATED,
                round=number,
                samples=[{"prompt": "def fibonacci(n):\n", "completion": completion}],
            )
        await settled(pilot.app.screen)

        await pilot.press("w")
        screen = await shown(pilot.app, CompletionsScreen)
        title, text = wrote(screen)
        assert title == "What the model wrote after round 1 (2/2)"
        assert "def fibonacci(n):\n    return 1  # round 1" in text
        assert "\x1b" not in text and "\x07" not in text  # no escape reaches the terminal

        await pilot.press("left")
        await until(lambda: "round 0" in wrote(screen)[0])
        assert "return 0" in wrote(screen)[1]

        await pilot.press("escape")
        await shown(pilot.app, MonitorScreen)


async def test_before_anything_is_written_it_says_what_will_be():
    scripted = ScriptedRun(config=RunConfig(rounds=4))
    async with live_app(scripted, clock=None).run_test(size=SIZE) as pilot:
        await settled(pilot.app.screen)
        await pilot.press("w")
        screen = await shown(pilot.app, CompletionsScreen)
        assert "generation_prompts" in wrote(screen)[1]
