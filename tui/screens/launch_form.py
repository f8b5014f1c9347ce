"""The launcher's config form: a preset's or a TOML file's config before a run starts, every key
with its value, the values it takes and its help (read from the config's declaration).

The edit line takes one `key=value`: exactly what one `--set` receives, so a list or a string
with spaces needs no shell quoting. It is parsed and checked as `--set` does, and a refusal is
`--set`'s line. Keys changed from the loaded config are bold. Save writes the config as TOML
(asking before it replaces a file); Start hands it back to the launcher, which starts it as any
other config."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Static

from engine.core.config import RunConfig
from engine.core.config_files import parse_override, to_toml
from engine.core.config_reference import declared_keys, value_text
from engine.core.describe import setting
from engine.core.errors import FedtuiError
from engine.core.live_config import with_changes
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.widgets.config_keys import ConfigKeysTable


class LaunchFormScreen(Screen[RunConfig | None]):
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", tooltip="Start a run with this config"),
        Binding("ctrl+s", "save", "Save", tooltip="Write this config as TOML to the path below"),
        Binding(
            "escape", "dismiss(None)", "Leave", tooltip="Back to the launcher, starting nothing"
        ),
        Binding("question_mark", "help", "Help", tooltip="Every key of this screen"),
    ]

    def __init__(self, source: str, loaded: RunConfig, edited: RunConfig | None = None) -> None:
        """`loaded`: the config `source` (a preset name or a TOML path) gives; `edited`: changes
        already made to it (a start that was refused), else none."""
        super().__init__()
        self.source = source
        self.loaded = loaded
        self.edited = edited or loaded
        self.keys = {key.name: key for key in declared_keys()}

    def compose(self) -> ComposeResult:
        yield Static(
            Text.assemble(
                ("Config ", "bold cyan"), (self.source, "bold"), "  changed keys in bold"
            ),
            id="form-title",
        )
        yield Input(placeholder="key=value, as --set takes it: rounds=10", id="assignment")
        yield Static("enter applies; pick a key below to edit its value", id="form-message")
        yield ConfigKeysTable(list(self.keys.values()), id="all-keys")
        yield Static("", id="key-help")
        with Horizontal(id="form-buttons"):
            yield Input(value=self._save_path(), placeholder="TOML file to write", id="save-path")
            yield Button("Save", id="save")
            yield Button("Start this config", id="start", variant="primary")
        yield Footer()

    def _save_path(self) -> str:
        """The file the config came from (saving asks before replacing it), else `PRESET.toml`."""
        return self.source if Path(self.source).is_file() else f"{self.source}.toml"

    def on_mount(self) -> None:
        self._show()
        self.query_one("#assignment", Input).focus()

    def _show(self) -> None:
        self.query_one(ConfigKeysTable).show(self.edited.to_dict(), self.loaded.to_dict())

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The key under the cursor's whole help: the table's column is cut at the screen's edge."""
        key = self.keys[str(event.row_key.value)]
        self.query_one("#key-help", Static).update(
            Text.assemble((key.name, "bold"), f"  {value_text(key)}: ", key.help)
        )

    def on_config_keys_table_picked(self, event: ConfigKeysTable.Picked) -> None:
        field = self.query_one("#assignment", Input)
        field.value = event.item
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "save-path":
            self.action_save()
            return
        try:
            key, value = parse_override(event.value.strip())
            self.edited, changes = with_changes(self.edited, {key: value})
        except FedtuiError as err:
            self._say(str(err), error=True)
            return
        self._show()
        event.input.value = ""
        self._say(
            "; ".join(f"{c.key}: {setting(c.old)} → {setting(c.new)}" for c in changes)
            or f"{key} is {setting(value)} already"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        elif event.button.id == "start":
            self.action_start()

    def action_start(self) -> None:
        self.dismiss(self.edited)

    def action_save(self) -> None:
        typed = self.query_one("#save-path", Input).value.strip()
        if not typed:
            self._say("type the path of the TOML file to write", error=True)
            return
        path = Path(typed)
        if not path.is_file():
            self._write(path)
            return
        self.app.push_screen(
            ConfirmScreen(
                f"{path} exists: replace it?", [("replace", "Replace"), ("keep", "Keep")]
            ),
            lambda answer: self._write(path) if answer == "replace" else None,
        )

    def _write(self, path: Path) -> None:
        try:
            path.write_text(to_toml(self.edited), encoding="utf-8")
        except OSError as err:
            self._say(f"cannot write {path}: {err}", error=True)
            return
        self._say(f"saved {path}: fedtui run {path} starts it")

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self))

    def _say(self, message: str, error: bool = False) -> None:
        self.query_one("#form-message", Static).update(
            Text(message, style="bold red" if error else "italic")
        )
