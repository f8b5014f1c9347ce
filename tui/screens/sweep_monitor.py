"""The live monitor of a sweep: every member that has started, overlaid, and the comparison
table filling in as they run and finish; the header, the clients table and the event log follow
the member that started last. `s` stops the sweep (the members running now end after their
round, no other starts), `a` aborts it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.core import events as ev
from engine.core.errors import FedtuiError
from engine.record.run_state import RunState
from engine.run.steering import Acknowledged
from engine.run.sweep import Sweep
from tui.screens.confirm import ConfirmScreen
from tui.screens.monitor import MonitorScreen

# The live run's keys a sweep does not offer: config changes and holds are each member's own
# (fedtui set / hold on a member's folder), and a sweep's members end with the TUI.
NOT_FOR_SWEEPS = {"toggle_early_stopping", "patience", "change_config", "hold", "detach"}


class SweepControl:
    """The sweep as the monitor's live run: what its keys and its closing reach."""

    detached = False

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.run_id = sweep.sweep_id

    @property
    def finished(self) -> bool:
        return self.sweep.finished

    def subscribe(self, subscriber: Callable[[ev.Event], None]) -> None:
        raise TypeError("a sweep's events come per member: SweepMonitorScreen subscribes")

    def start(self) -> Sweep:
        return self.sweep.start()

    def request_stop(self) -> None:
        self.sweep.request_stop()

    def abort(self) -> None:
        self.sweep.abort()

    def change_config(self, changes: dict[str, Any], source: str = "monitor") -> Acknowledged:
        raise FedtuiError("each member's config is its own: fedtui set on a member's folder")

    def hold(self, source: str = "monitor") -> None:
        raise FedtuiError("each member holds on its own: fedtui hold on a member's folder")

    def continue_run(self, source: str = "monitor") -> None:
        self.hold(source)

    def detach(self) -> None:
        raise FedtuiError("a sweep cannot be detached: its members end with this screen")

    def wait(self, timeout: float | None = None) -> str | None:
        return self.sweep.wait(timeout)


class SweepMonitorScreen(MonitorScreen):
    def __init__(self, sweep: Sweep, clock: Callable[[], float] | None = time.time) -> None:
        super().__init__(live=SweepControl(sweep), clock=clock, folder=sweep.sweep_dir)
        self.sweep = sweep
        self.names = [member.name for member in sweep.members]  # >1: the comparison table
        self.member_states: dict[str, RunState] = {}
        self.current: str | None = None
        self._member_inbox: list[tuple[str, ev.Event]] = []

    @property
    def states(self) -> list[RunState]:
        """The members that have started, the current one first (the header, the clients
        table and the best-round mark show the first)."""
        return [self.member_states[name] for name in self._shown_names()]

    def _shown_names(self) -> list[str]:
        return sorted(self.member_states, key=lambda name: name != self.current)

    def _follow_live(self) -> None:
        self.sweep.subscribe(lambda member, event: self._member_inbox.append((member, event)))
        self.sweep.start()

    def _drain_inbox(self) -> None:
        arrived, self._member_inbox = self._member_inbox, []
        if not arrived and self.live_state.status == self.sweep.status:
            return
        self.live_state.status = self.sweep.status  # what the stop and abort keys look at
        shown = []
        for member, event in arrived:
            state = self.member_states.setdefault(member, RunState())
            state.apply(event)
            if event["type"] == ev.RUN_STARTED:
                self.current = member
                shown.append(_notice(event, f"sweep member {member} started"))
            elif event["type"] == ev.RUN_FINISHED:
                shown.append(_notice(event, f"sweep member {member} {state.status}"))
            elif member == self.current:
                shown.append(event)
        if self.member_states:  # the widgets show runs: none until a member starts
            self._publish(shown)
        if self._quit_when_finished and self.sweep.finished:
            self.app.exit()

    def _publish(self, events: list[ev.Event], reset: bool = False) -> None:
        self.names = self._shown_names()
        super()._publish(events, reset)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in NOT_FOR_SWEEPS:
            return False
        return super().check_action(action, parameters)

    def action_quit_monitor(self) -> None:
        if self.sweep.finished:
            self.app.exit()
            return

        def decided(answer: str | None) -> None:
            if answer == "stop":
                self.sweep.request_stop()
                self._quit_when_finished = True
                self.notify("stopping the sweep after the current round; fedtui quits then")
            elif answer == "abort":
                self.sweep.abort()
                self.app.exit()

        self.app.push_screen(
            ConfirmScreen(
                "The sweep is live; its members end with this screen.",
                [("stop", "Stop after round"), ("abort", "Abort now"), ("watch", "Keep watching")],
            ),
            decided,
        )


def _notice(event: ev.Event, message: str) -> ev.Event:
    """A line of the sweep's own in the event log, at the time of the member's `event`."""
    return ev.stamp(ev.make(ev.NOTICE, message=message), now=event.get("t"))
