"""What the monitor does to a live run: stop, abort, change its config from the next round (the
form, the early-stopping keys), hold and continue, detach, quit. Each request goes to the run's
controller (through its control socket) and a refusal is shown, never raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from textual import work

from engine.core import events as ev
from engine.core.describe import setting
from engine.core.errors import FedtuiError
from engine.core.status import Status
from engine.run.steering import Acknowledged
from tui.screens.config_form import ConfigFormScreen
from tui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from textual.app import App

    from engine.record.run_state import RunState


class LiveRun(Protocol):
    """What the monitor needs of a run: `engine.run.followed_run.FollowedRun` is one. `detached`:
    the run goes on when the monitor closes; until then, closing it aborts the run."""

    run_id: str
    detached: bool

    @property
    def finished(self) -> bool: ...

    def subscribe(self, subscriber: Callable[[ev.Event], None]) -> None: ...
    def start(self) -> object: ...
    def request_stop(self) -> None: ...
    def change_config(self, changes: dict[str, Any], source: str = ...) -> Acknowledged: ...
    def hold(self, source: str = ...) -> None: ...
    def continue_run(self, source: str = ...) -> None: ...
    def abort(self) -> None: ...
    def detach(self) -> None: ...
    def wait(self, timeout: float | None = None) -> str | None: ...


class LiveRunActions:
    """The live-run actions of the monitor screen (a mixin: the screen provides the run, its
    state, `app` and `notify`)."""

    live: LiveRun | None  # None: a replay, where only quitting applies
    live_state: RunState
    app: App
    notify: Callable[..., None]
    _quit_when_finished: bool
    _hold_asked: bool  # a hold was asked for, and the run has not held yet

    @property
    def live_run(self) -> LiveRun:
        """The live run, for live-only actions (`check_action` offers them on a live monitor)."""
        if self.live is None:
            raise RuntimeError("a live-only action on a replay")
        return self.live

    def action_stop(self) -> None:
        if self.live_state.finished or self.live_state.status == Status.STOPPING:
            self.notify("the run is already ending")
            return

        def decided(answer: str | None) -> None:
            if answer == "stop" and self._ask(self.live_run.request_stop):
                self.notify("stopping after the current round")

        self.app.push_screen(
            ConfirmScreen(
                "Stop the run after the current round? Rounds so far stay recorded.",
                [("stop", "Stop after this round"), ("cancel", "Keep running")],
            ),
            decided,
        )

    def action_abort(self) -> None:
        if self.live_state.finished:
            self.notify("the run has already ended")
            return

        def decided(answer: str | None) -> None:
            if answer == "abort" and self._ask(self.live_run.abort):
                self.notify("aborting: ending every process now", severity="warning")

        self.app.push_screen(
            ConfirmScreen(
                "Abort now? The current round is lost; every Flower process is ended.",
                [("abort", "Abort now"), ("cancel", "Keep running")],
            ),
            decided,
        )

    def action_toggle_early_stopping(self) -> None:
        enabled = not self.live_state.early_stopping.get("enabled", False)
        self._change({"early_stopping.enabled": enabled})

    def action_patience(self, change: int) -> None:
        patience = max(1, self.live_state.early_stopping.get("patience", 1) + change)
        self._change({"early_stopping.patience": patience})

    def action_change_config(self) -> None:
        if self.live_state.finished:
            self.notify("the run has already ended")
            return
        form = ConfigFormScreen(
            self.live_state.config,
            lambda changes: self.live_run.change_config(changes, source="monitor"),
        )
        self.app.push_screen(form, self._changed)

    def action_hold(self) -> None:
        """Hold after the current round, or go on with a held run."""
        if self.live_state.finished:
            self.notify("the run has already ended")
        elif self.live_state.status == Status.HELD or self._hold_asked:
            if self._ask(lambda: self.live_run.continue_run(source="monitor")):
                self._hold_asked = False
                self.notify("going on with the next round")
        elif self._ask(lambda: self.live_run.hold(source="monitor")):
            self._hold_asked = True
            self.notify(f"holding after round {self.live_state.current_round} (h goes on)")

    @work(thread=True, group="change")
    def _change(self, changes: dict[str, Any]) -> None:
        """A change from a key, sent off the UI thread: the ServerApp's answer can take a
        while (it reads commands between its steps)."""
        try:
            acknowledged = self.live_run.change_config(changes, source="monitor")
        except (FedtuiError, OSError) as err:
            self.app.call_from_thread(self.notify, str(err), severity="error")
            return
        self.app.call_from_thread(self._changed, acknowledged)

    def _changed(self, acknowledged: Acknowledged | None) -> None:
        if acknowledged is None:  # the form was left
            return
        for event in acknowledged["changes"]:
            self.notify(
                f"{event['key']}: {setting(event['old'])} -> {setting(event['new'])} "
                f"from round {event['round']}"
            )
        if acknowledged["unanswered"]:
            self.notify(
                f"sent {', '.join(acknowledged['unanswered'])}: the run has not said yet from "
                f"which round (the event log will)"
            )
        elif not acknowledged["changes"]:
            self.notify("nothing changes: every value is already so")

    def action_detach(self) -> None:
        if self.live_state.finished:
            self.notify("the run has already ended")
        elif self._ask(self.live_run.detach):
            self.app.exit()

    def action_quit_monitor(self) -> None:
        if self.live is None or self.live_state.finished:
            self.app.exit()
            return

        def decided(answer: str | None) -> None:
            if answer == "detach":
                self.action_detach()
            elif answer == "stop" and self._ask(self.live_run.request_stop):
                self._quit_when_finished = True
                self.notify("stopping after the current round; fedtui quits when it ends")
            elif answer == "abort" and self._ask(self.live_run.abort):
                self.app.exit()

        self.app.push_screen(
            ConfirmScreen(
                "The run is live. Detached, it goes on without this screen "
                "(fedtui attach comes back to it); stopped or aborted, it ends.",
                [
                    ("detach", "Detach"),
                    ("stop", "Stop after round"),
                    ("abort", "Abort now"),
                    ("watch", "Keep watching"),
                ],
            ),
            decided,
        )

    def _ask(self, request: Callable[[], None]) -> bool:
        """Send a request to the run's controller; False (and why, on screen) if it refused or
        cannot be reached."""
        try:
            request()
        except (FedtuiError, OSError) as err:
            self.notify(str(err), severity="error")
            return False
        return True
