"""The Textual app: a launcher, a run monitor (live or replay), help and confirm dialogs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.screen import Screen

from engine.config import RunConfig
from tui.screens.launcher import LauncherScreen
from tui.screens.monitor import LiveRun, MonitorScreen

COMMANDS = (
    ("Stop after this round", "End the live run once the current round is evaluated", "stop"),
    ("Abort the run now", "End every process of the live run now", "abort"),
    ("Toggle early stopping", "Automatic early stopping on central eval loss, on or off",
     "toggle_early_stopping"),
    ("Raise patience", "Early stopping waits one more round without improvement", "patience(1)"),
    ("Lower patience", "Early stopping waits one round less", "patience(-1)"),
    ("Toggle log-Y", "Loss chart: logarithmic y axis", "toggle_chart('log_y')"),
    ("Toggle smoothing", "Loss chart: debiased EMA smoothing (0.6)", "toggle_chart('smoothing')"),
    ("Toggle client lines", "Loss chart: per-client train loss", "toggle_chart('show_clients')"),
    ("Play / pause replay", "Replay: play or pause", "play_pause"),
    ("Next round", "Replay: show up to the end of the next round", "step(1)"),
    ("Previous round", "Replay: show up to the end of the previous round", "step(-1)"),
    ("Jump to end", "Replay: show the whole run", "jump_end"),
    ("Save a screenshot", "An SVG of this screen, into the run folder", "screenshot"),
    ("Help", "Every key of this screen", "help"),
)


class FedtuiApp(App):
    CSS_PATH = "fedtui.tcss"
    TITLE = "fedtui"

    def __init__(self, first_screen: Callable[[FedtuiApp], Screen]) -> None:
        super().__init__()
        self._first_screen = first_screen

    def on_mount(self) -> None:
        self.push_screen(self._first_screen(self))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in COMMANDS:
            name = action.split("(")[0]
            if hasattr(screen, f"action_{name}") and screen.check_action(name, ()):
                yield SystemCommand(title, help_text,
                                    lambda action=action: screen.run_action(action))


def launcher_app(saved_dirs: list[Path], start_run: Callable[[RunConfig], LiveRun],
                 clock: Callable[[], float] | None = time.time) -> FedtuiApp:
    return FedtuiApp(lambda app: LauncherScreen(saved_dirs=saved_dirs, start_run=start_run,
                                                clock=clock))


def live_app(run: LiveRun, clock: Callable[[], float] | None = time.time) -> FedtuiApp:
    return FedtuiApp(lambda app: MonitorScreen(live=run, clock=clock))


def replay_app(recorded: list[tuple[str, list[dict]]], folder: Path | None = None) -> FedtuiApp:
    return FedtuiApp(lambda app: MonitorScreen(recorded=recorded, folder=folder))
