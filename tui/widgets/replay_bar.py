"""Where a replay stands and which keys move it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.messages import ReplayPosition


class ReplayBar(Static):
    def on_replay_position(self, message: ReplayPosition) -> None:
        text = Text()
        text.append(
            " ▶ playing " if message.playing else " ❚❚ paused ",
            style="reverse bold magenta" if message.playing else "reverse bold",
        )
        text.append(
            f"  speed {message.speed_label}  round {message.round_shown}/"
            f"{message.rounds}  event {message.events_shown}/{message.events_total}"
        )
        text.append("   space play/pause  ←/→ round  end jump  +/- speed", style="dim")
        self.update(text)
