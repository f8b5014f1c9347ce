"""Messages that carry run data into widgets (widgets never reach into the engine)."""

from __future__ import annotations

from textual.message import Message

from engine.core.events import Event
from engine.record.run_state import RunState


class RunsChanged(Message, bubble=False):
    """The runs on screen changed; `states[0]` is the run being watched, the rest overlays."""

    def __init__(self, states: list[RunState], names: list[str]) -> None:
        super().__init__()
        self.states = states
        self.names = names


class NewEvents(Message, bubble=False):
    """Events to add to the event log; `reset` first clears it (a replay stepped back)."""

    def __init__(self, events: list[Event], reset: bool = False) -> None:
        super().__init__()
        self.events = events
        self.reset = reset


class ReplayPosition(Message, bubble=False):
    """Where a replay stands: playing or not, speed, round shown, events shown."""

    def __init__(
        self,
        playing: bool,
        speed_label: str,
        round_shown: int,
        rounds: int,
        events_shown: int,
        events_total: int,
    ) -> None:
        super().__init__()
        self.playing = playing
        self.speed_label = speed_label
        self.round_shown = round_shown
        self.rounds = rounds
        self.events_shown = events_shown
        self.events_total = events_total
