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
from textual.widgets import DataTable, Input, Label, Static

from engine.core.config_checks import config_from_dict
from engine.core.config_files import get_dotted
from engine.core.config_reference import declared_keys, value_text
from engine.core.describe import setting
from engine.core.errors import FedtuiError
from engine.core.live_config import change_between_rounds, parse_changes
from engine.run.steering import Acknowledged

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
            yield DataTable(id="live-keys", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#live-keys", DataTable)
        table.add_columns("key", "now", "values", "what it does")
        for key in self.live_keys:
            now = setting(get_dotted(self.config, key.name))
            table.add_row(key.name, now, value_text(key), key.help, key=key.name)
        self.query_one("#changes", Input).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """A key picked from the table: its current value, ready to edit."""
        name = str(event.row_key.value)
        field = self.query_one("#changes", Input)
        field.value = f"{name}={setting(get_dotted(self.config, name))}"
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
