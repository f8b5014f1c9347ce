"""The run monitor: one screen for live runs and replays (one run, or several overlaid).

Events from the engine arrive on engine threads and wait in an inbox; a 10 Hz timer drains it,
folds them into `RunState`, and sends the widgets one message per tick, however many events
came in. The chart redraws at most twice a second on top of that.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.screen import Screen
from textual.widgets import Footer

from engine.core import events as ev
from engine.record.run_folders import is_sample_run, read_parent
from engine.record.run_state import RunState
from tui.messages import NewEvents, ReplayPosition, RunsChanged
from tui.replay import ReplayPlayer
from tui.screens.completions import CompletionsScreen
from tui.screens.help import HelpScreen
from tui.screens.live_actions import LiveRun, LiveRunActions
from tui.screens.monitor_keys import (
    CHART_OPTION_NAMES,
    LIVE_BINDINGS,
    LIVE_ONLY,
    REPLAY_BINDINGS,
    REPLAY_ONLY,
    VIEW_BINDINGS,
)
from tui.widgets.clients_table import ClientsTable
from tui.widgets.comparison_table import ComparisonTable
from tui.widgets.device_panel import DevicePanel
from tui.widgets.event_log import EventLog
from tui.widgets.replay_bar import ReplayBar
from tui.widgets.run_chart import RunChart
from tui.widgets.run_header import RunHeader

TICK_S = 0.1
LOG_TAIL_ON_SEEK = 500


class MonitorScreen(LiveRunActions, Screen):
    BINDINGS: ClassVar[list[BindingType]] = [*LIVE_BINDINGS, *REPLAY_BINDINGS, *VIEW_BINDINGS]

    def __init__(
        self,
        *,
        live: LiveRun | None = None,
        recorded: list[tuple[str, list[ev.Event]]] | None = None,
        clock: Callable[[], float] | None = time.time,
        folder: Path | None = None,
    ) -> None:
        """`folder`: where screenshots go (the run folder of the run shown first; for a sample
        run, which ships inside fedtui, the current directory)."""
        super().__init__()
        folder = folder if folder is not None else getattr(live, "run_dir", None)
        self.folder = Path.cwd() if folder is not None and is_sample_run(folder) else folder
        if (live is None) == (not recorded):
            raise ValueError("a monitor shows either a live run or recorded runs")
        self.live = live
        self.players = [ReplayPlayer(events) for _, events in recorded or []]
        self.names = [live.run_id] if live is not None else [name for name, _ in recorded or []]
        self.live_state = RunState()
        self._inbox: deque[ev.Event] = deque()
        self._clock = clock if live is not None else None
        self._quit_when_finished = False
        self._hold_asked = False
        self._parents: dict[str, RunState | None] = {}  # forks' parents, read once each
        self._last_tick = time.monotonic()

    @property
    def states(self) -> list[RunState]:
        return [self.live_state] if self.live is not None else [p.state for p in self.players]

    @property
    def settled(self) -> bool:
        """Whether the screen shows everything that has arrived: no event waits in the inbox,
        no widget has a message left to handle, the chart has drawn its latest data, and no
        replay is playing. What tests and screenshots wait for."""
        return (
            not self._inbox
            and not any(player.playing for player in self.players)
            and all(widget.message_queue_size == 0 for widget in self.walk_children())
            and self.query_one(RunChart).up_to_date
        )

    def compose(self) -> ComposeResult:
        yield RunHeader(clock=self._clock, id="header")
        yield DevicePanel(id="devices")
        yield RunChart(id="chart")
        yield ClientsTable(id="clients")
        yield EventLog(id="log")
        if len(self.names) > 1:
            yield ComparisonTable(id="comparison")
        if self.players:
            yield ReplayBar(id="replay-bar")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#clients").border_title = "clients"
        self.query_one("#log").border_title = "events"
        if len(self.names) > 1:
            self.query_one("#comparison").border_title = "comparison"
        if self.live is not None:
            self._follow_live()
            self.set_interval(TICK_S, self._drain_inbox)
            self._drain_inbox()
        else:
            for player in self.players:
                player.jump_to_end()
            self._show_seek()
            self.set_interval(TICK_S, self._advance_replay)

    def on_unmount(self) -> None:
        if self.live is not None and not self.live.finished and not self.live.detached:
            self.live.abort()  # leaving the monitor must never leave a process behind
            self.live.wait(30)

    # -- data in ----------------------------------------------------------------------------

    def _follow_live(self) -> None:
        self.live_run.subscribe(self._inbox.append)
        self.live_run.start()

    def _drain_inbox(self) -> None:
        arrived = []
        while self._inbox:
            arrived.append(self._inbox.popleft())
        if not arrived:
            return
        for event in arrived:
            self.live_state.apply(event)
            if event["type"] in (ev.HELD, ev.CONTINUED):  # the hold asked for is over
                self._hold_asked = False
        self._publish(arrived)
        if self._quit_when_finished and self.live_state.finished:
            self.app.exit()

    def _advance_replay(self) -> None:
        now = time.monotonic()
        elapsed, self._last_tick = now - self._last_tick, now
        released = [player.advance(elapsed) for player in self.players]
        if any(released):
            self._publish(released[0])
        self._post_position()

    def _show_seek(self) -> None:
        primary = self.players[0]
        tail = [e for e in primary.events[: primary.position] if e["type"] != ev.CLIENT_PROGRESS][
            -LOG_TAIL_ON_SEEK:
        ]
        self._publish(tail, reset=True)
        self._post_position()

    def _publish(self, events: list[ev.Event], reset: bool = False) -> None:
        for state in self.states:  # a fork is drawn after its parent's rounds
            if state.forked_from and state.parent is None:
                path = state.forked_from["path"]
                if path not in self._parents:
                    self._parents[path] = read_parent(state)
                state.parent = self._parents[path]
        message_args = (self.states, self.names)
        for widget_id in ("header", "devices", "chart", "clients", "comparison"):
            for widget in self.query(f"#{widget_id}"):
                widget.post_message(RunsChanged(*message_args))
        if events or reset:
            self.query_one(EventLog).post_message(NewEvents(events, reset=reset))

    def _post_position(self) -> None:
        if not self.players:
            return
        primary = self.players[0]
        self.query_one(ReplayBar).post_message(
            ReplayPosition(
                primary.playing,
                primary.speed_label,
                primary.state.current_round,
                primary.state.total_rounds or 0,
                primary.position,
                len(primary.events),
            )
        )

    # -- actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in LIVE_ONLY:
            return self.live is not None
        if action in REPLAY_ONLY:
            return bool(self.players)
        return True

    def action_toggle_chart(self, option: str) -> None:
        on = self.query_one(RunChart).toggle(option)
        self.notify(f"{CHART_OPTION_NAMES[option]} {'on' if on else 'off'}", timeout=1.5)

    def action_chart_view(self, key: str) -> None:
        self.query_one(RunChart).show_view(key)  # its title says which view it is

    def action_sort_clients(self) -> None:
        order = self.query_one(ClientsTable).cycle_sort()
        self.notify(f"clients sorted by {order}", timeout=1.5)

    def action_play_pause(self) -> None:
        for player in self.players:
            player.toggle()
        if self.players[0].position == 0:
            self._show_seek()
        self._last_tick = time.monotonic()
        self._post_position()

    def action_step(self, direction: int) -> None:
        for player in self.players:
            player.playing = False
            player.step_round(direction)
        self._show_seek()

    def action_jump_end(self) -> None:
        for player in self.players:
            player.jump_to_end()
        self._show_seek()

    def action_faster(self) -> None:
        for player in self.players:
            player.faster()
        self._post_position()

    def action_slower(self) -> None:
        for player in self.players:
            player.slower()
        self._post_position()

    def action_screenshot(self) -> None:
        if self.folder is None:
            self.notify("no run folder to save a screenshot into", severity="warning")
            return
        name = f"screenshot-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        try:  # a sample run in an installed fedtui lives in a read-only folder
            path = self.app.save_screenshot(filename=name, path=str(self.folder))
        except OSError as err:
            self.notify(
                f"cannot save a screenshot into {self.folder}: {err.strerror}", severity="error"
            )
            return
        self.notify(f"saved {path}")

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self))

    def action_samples(self) -> None:
        self.app.push_screen(CompletionsScreen(self.states[0]))
