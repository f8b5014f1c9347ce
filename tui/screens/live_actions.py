"""What the monitor does to a live run: stop, abort, early stopping, detach, quit. Each request
goes to the run's controller (through its control socket) and a refusal is shown, never raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from engine.core import events as ev
from engine.core.errors import FedtuiError
from engine.core.status import Status
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
    def set_early_stopping(
        self, enabled: bool | None = None, patience: int | None = None
    ) -> None: ...
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
        if self._ask(lambda: self.live_run.set_early_stopping(enabled=enabled)):
            self.notify(f"asked the server to turn early stopping {'on' if enabled else 'off'}")

    def action_patience(self, change: int) -> None:
        patience = max(1, self.live_state.early_stopping.get("patience", 1) + change)
        if self._ask(lambda: self.live_run.set_early_stopping(patience=patience)):
            self.notify(f"asked the server for patience {patience}")

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
