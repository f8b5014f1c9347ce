"""The form that changes a live run from its next round: every live key with the value the run
goes on with and its help (read from the config's declaration), and a line to type changes in.
Enter applies them, Escape leaves; a value is checked exactly as `--set` checks it, and a key
that cannot change in a live run is refused saying why. The form stays open on a refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from engine.core.config_checks import config_from_dict
from engine.core.config_reference import declared_keys
from engine.core.errors import FedtuiError
from engine.core.live_config import change_between_rounds, parse_changes
from engine.run.steering import Acknowledged
from tui.widgets.config_keys import ConfigKeysTable

Apply = Callable[[dict[str, Any]], Acknowledged]  # blocking: run off the UI thread


class ConfigFormScreen(ModalScreen[Acknowledged | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Leave", tooltip="Close without changing")]

    def __init__(self, config: dict[str, Any], apply: Apply) -> None:
        """`config`: what the run goes on with now; `apply(changes)` sends them to the run and
        returns its acknowledgements (engine.run.steering)."""
        super().__init__()
        self.config = config
        self.apply = apply
        self.live_keys = [key for key in declared_keys() if key.live]

    def compose(self) -> ComposeResult:
        with Vertical(id="config-form"):
            yield Label("Change the run from its next round (key=value, several at once)")
            yield Input(placeholder="learning_rate=5e-4 local_epochs=2", id="changes")
            yield Static("", id="form-message")
            yield ConfigKeysTable(self.live_keys, id="live-keys")

    def on_mount(self) -> None:
        self.query_one(ConfigKeysTable).show(self.config)
        self.query_one("#changes", Input).focus()

    def on_config_keys_table_picked(self, event: ConfigKeysTable.Picked) -> None:
        field = self.query_one("#changes", Input)
        field.value = event.item
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            changes = parse_changes(event.value.split())
            change_between_rounds(config_from_dict(self.config), changes)
        except FedtuiError as err:
            self._say(str(err), error=True)
            return
        self._say("sending to the run...")
        self._send(changes)

    @work(thread=True, exclusive=True)
    def _send(self, changes: dict[str, Any]) -> None:
        try:
            acknowledged = self.apply(changes)
        except (FedtuiError, OSError) as err:
            self.app.call_from_thread(self._say, str(err), True)
            return
        self.app.call_from_thread(self.dismiss, acknowledged)

    def _say(self, message: str, error: bool = False) -> None:
        self.query_one("#form-message", Static).update(
            Text(message, style="bold red" if error else "italic")
        )
