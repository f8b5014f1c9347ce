"""The Textual app: a launcher, a run monitor (live or replay), help and confirm dialogs;
its command palette offers the keys of the screen below it (`tui.bindings`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.screen import Screen

from engine.core.config import RunConfig
from engine.run.sweep import Sweep
from tui.bindings import palette_commands
from tui.screens.launcher import LauncherScreen
from tui.screens.live_actions import LiveRun
from tui.screens.monitor import MonitorScreen
from tui.screens.sweep_monitor import SweepMonitorScreen


class FedtuiApp(App):
    CSS_PATH = "fedtui.tcss"
    TITLE = "fedtui"

    def __init__(self, first_screen: Callable[[FedtuiApp], Screen]) -> None:
        super().__init__()
        self._first_screen = first_screen

    def on_mount(self) -> None:
        self.push_screen(self._first_screen(self))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's commands, then the screen's keys. A key's command replaces Textual's of the
        same name: our Quit asks before ending a live run, our Screenshot goes to the run folder."""
        ours = palette_commands(screen)
        titles = {command.title for command in ours}
        yield from (
            command
            for command in super().get_system_commands(screen)
            if command.title not in titles
        )
        yield from ours


def launcher_app(
    saved_dirs: list[Path],
    start_run: Callable[[RunConfig], LiveRun],
    clock: Callable[[], float] | None = time.time,
) -> FedtuiApp:
    return FedtuiApp(
        lambda app: LauncherScreen(saved_dirs=saved_dirs, start_run=start_run, clock=clock)
    )


def live_app(run: LiveRun, clock: Callable[[], float] | None = time.time) -> FedtuiApp:
    return FedtuiApp(lambda app: MonitorScreen(live=run, clock=clock))


def sweep_app(sweep: Sweep, clock: Callable[[], float] | None = time.time) -> FedtuiApp:
    return FedtuiApp(lambda app: SweepMonitorScreen(sweep, clock=clock))


def replay_app(recorded: list[tuple[str, list[dict]]], folder: Path | None = None) -> FedtuiApp:
    return FedtuiApp(lambda app: MonitorScreen(recorded=recorded, folder=folder))
