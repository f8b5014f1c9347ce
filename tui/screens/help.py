"""The `?` screen: every key of the screen below it, what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from tui.bindings import offered_bindings


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def __init__(self, underlying: Screen) -> None:
        super().__init__()
        self.underlying = underlying

    def rows(self) -> list[tuple[str, str, str]]:
        """(key, name, what it does) for every key the screen below offers now."""
        rows = [
            (self.app.get_key_display(binding), binding.description, binding.tooltip)
            for binding in offered_bindings(self.underlying)
        ]
        return rows + [("ctrl+p", "Palette", "Every action by name")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold cyan", justify="right")
        table.add_column(style="bold")
        table.add_column(style="dim")
        for row in self.rows():
            table.add_row(*row)
        with Vertical(id="dialog"):
            yield Label("fedtui keys", id="question")
            yield Static(table)
            yield Label("escape closes this help", classes="hint")
