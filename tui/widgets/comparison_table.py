"""Runs side by side: best round, best and final eval loss, rounds, wall time, bytes."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from engine.core.strategies import describe_strategy
from engine.record.run_state import RunState
from tui import format as fmt
from tui.chart_lines import RUN_COLORS
from tui.messages import RunsChanged

COLUMNS = (
    "run",
    "strategy",
    "status",
    "rounds",
    "best round",
    "best eval",
    "final eval",
    "wall time",
    "bytes exchanged",
)


class ComparisonTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns(*COLUMNS)

    def on_runs_changed(self, message: RunsChanged) -> None:
        self.clear()
        for index, (state, name) in enumerate(zip(message.states, message.names)):
            red, green, blue = RUN_COLORS[index % len(RUN_COLORS)]
            self.add_row(*self.cells(state, name, f"rgb({red},{green},{blue})"), key=str(index))

    @staticmethod
    def cells(state: RunState, name: str, color: str) -> list:
        summary = fmt.run_summary(state)
        return [
            Text(f"■ {name}", style=color),
            describe_strategy(state.config),
            state.status,
            *(
                Text(
                    summary[key], justify="right", style="bold green" if key == "best_eval" else ""
                )
                for key in ("rounds", "best_round", "best_eval", "final_eval", "wall", "exchanged")
            ),
        ]
