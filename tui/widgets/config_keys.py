"""Config keys as table rows, read from their declaration: each key's value, the values it takes
and its help. The forms that change a config (the launcher's, a live run's) list keys here;
picking a row offers that key's `key=value`, as `--set` reads it, to edit."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from engine.core.config_files import get_dotted, override_item
from engine.core.config_reference import Key, value_text
from engine.core.describe import setting

VALUE_WIDTH = 28  # a long value (the generation prompts) would push the help off the screen


class ConfigKeysTable(DataTable):
    class Picked(Message):
        """A key picked from the table: its `key=value`, ready to edit."""

        def __init__(self, item: str) -> None:
            super().__init__()
            self.item = item

    def __init__(self, keys: list[Key], *, id: str) -> None:
        super().__init__(id=id, cursor_type="row")
        self.keys = keys
        self.config: dict[str, Any] = {}

    def on_mount(self) -> None:
        self.add_column("key")
        self.add_column("value", width=VALUE_WIDTH)
        self.add_columns("values", "what it does")

    def show(self, config: dict[str, Any], changed_from: dict[str, Any] | None = None) -> None:
        """Every key's value in `config` (a config table); in bold the keys whose value differs
        from `changed_from`'s."""
        self.config = config
        for key in self.keys:
            value = get_dotted(config, key.name)
            changed = changed_from is not None and value != get_dotted(changed_from, key.name)
            name, shown = (
                (Text(key.name, style="bold"), Text(setting(value), style="bold"))
                if changed
                else (key.name, setting(value))
            )
            if key.name in self.rows:
                self.update_cell(key.name, self.ordered_columns[0].key, name)
                self.update_cell(key.name, self.ordered_columns[1].key, shown)
            else:
                self.add_row(name, shown, value_text(key), key.help, key=key.name)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        name = str(event.row_key.value)
        self.post_message(self.Picked(override_item(name, get_dotted(self.config, name))))
