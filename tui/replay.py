"""Replaying recorded events on a virtual clock: play/pause, speed, step by round, jump to end."""

from __future__ import annotations

import math

from engine.core import events as ev
from engine.record.run_state import RunState

SPEEDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, math.inf)


class ReplayPlayer:
    """Holds the events of one recorded run and how many of them are shown."""

    def __init__(self, events: list[ev.Event]) -> None:
        self.events = events
        self.position = 0
        self.state = RunState()
        self.playing = False
        self.speed_index = SPEEDS.index(64.0)
        self._origin = events[0].get("t", 0.0) if events else 0.0
        self._clock = 0.0  # virtual seconds since the first event
        self._round_ends = [i + 1 for i, e in enumerate(events) if e["type"] == ev.ROUND_DONE]

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    @property
    def speed_label(self) -> str:
        return "max" if math.isinf(self.speed) else f"{self.speed:g}x"

    @property
    def at_end(self) -> bool:
        return self.position >= len(self.events)

    def faster(self) -> None:
        self.speed_index = min(self.speed_index + 1, len(SPEEDS) - 1)

    def slower(self) -> None:
        self.speed_index = max(self.speed_index - 1, 0)

    def toggle(self) -> None:
        if not self.playing and self.at_end:
            self.seek(0)
        self.playing = not self.playing

    def advance(self, wall_seconds: float) -> list[ev.Event]:
        """Events that become visible after `wall_seconds` of playing."""
        if not self.playing:
            return []
        self._clock += wall_seconds * self.speed
        end = self.position
        while end < len(self.events) and (
            math.isinf(self.speed) or self.events[end].get("t", 0.0) - self._origin <= self._clock
        ):
            end += 1
        released = self._apply_until(end)
        if self.at_end:
            self.playing = False
        return released

    def step_round(self, direction: int) -> None:
        """Show up to the end of the next (+1) or previous (-1) round."""
        if direction > 0:
            target = next(
                (end for end in self._round_ends if end > self.position), len(self.events)
            )
        else:
            target = next((end for end in reversed(self._round_ends) if end < self.position), 0)
        self.seek(target)

    def jump_to_end(self) -> None:
        self.seek(len(self.events))
        self.playing = False

    def seek(self, position: int) -> None:
        if position < self.position:
            self.position, self.state = 0, RunState()
        self._apply_until(position)
        self._clock = (self.events[position - 1].get("t", 0.0) - self._origin) if position else 0.0

    def _apply_until(self, end: int) -> list[ev.Event]:
        released = self.events[self.position : end]
        for event in released:
            self.state.apply(event)
        self.position = max(self.position, end)
        return released
