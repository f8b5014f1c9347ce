"""What the ServerApp is told while it runs, and when each takes effect: stop after the round,
hold after the round (and continue), and live config changes.

The controller sends commands over the event channel (engine.net.channel); the round loop reads
them whenever it waits, and at the top of every round. A config change applies from the next
round that has not begun, never to one in flight: the ServerApp, the one that knows which round
that is, acknowledges each change at once with a `config_changed` event naming it, and applies
it when that round begins. A hold waits between rounds for as long as it lasts, reading
commands: nothing of Flower's times out meanwhile (no message is in flight).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.app.server.roster import Roster
from engine.core import commands, events as ev
from engine.core.config import RunConfig
from engine.core.errors import ConfigError
from engine.core.live_config import with_changes
from engine.ml.schedule import round_learning_rate
from engine.net.channel import EventPublisher

HOLD_POLL_S = 0.25


class ServerSteering:
    def __init__(
        self,
        config: RunConfig,
        publisher: EventPublisher | None,
        roster: Roster,
        publish: Callable[..., None],
        first_round: int,
    ) -> None:
        """`config`: what the run starts with; `first_round`: the first round it trains."""
        self.config = config  # what the rounds that have begun run with
        self.next_round = first_round  # the first round that has not begun
        self.stop_requested = False
        self.hold_requested = False
        self._publisher = publisher
        self._roster = roster
        self._publish = publish
        self._upcoming = config  # with every acknowledged change: what the next round runs with

    def read(self) -> None:
        """Take every command the controller has sent since the last read."""
        if self._publisher is None:
            return
        for command in self._publisher.commands():
            if self._roster.apply(command):
                continue
            name = command["command"]
            if name == commands.STOP:
                self.stop_requested = True
            elif name == commands.HOLD:
                self.hold_requested = True
            elif name == commands.CONTINUE:
                self.hold_requested = False
            elif name == commands.SET:
                self._acknowledge(command["changes"], command.get("source"))

    def begin_round(self, server_round: int) -> RunConfig:
        """Round `server_round` begins: the config it runs with (every change acknowledged
        before now applies to it)."""
        self.config = self._upcoming
        self.next_round = server_round + 1
        return self.config

    def hold(self, after_round: int) -> None:
        """Between rounds, while a hold is asked for: wait, reading commands, until the run
        continues or is stopped."""
        if not self.hold_requested or self.stop_requested:
            return
        self._publish(ev.HELD, round=after_round)
        held_at = time.monotonic()
        while self.hold_requested and not self.stop_requested:
            time.sleep(HOLD_POLL_S)
            self.read()
        if not self.stop_requested:
            self._publish(ev.CONTINUED, round=after_round, seconds=time.monotonic() - held_at)

    def _acknowledge(self, changes: dict[str, Any], source: str | None) -> None:
        """A change the controller checked: recorded at once, applied from the next round.
        `rounds` cannot go below the rounds that have begun: the run then ends after the last
        of them."""
        if "rounds" in changes:
            changes = {**changes, "rounds": max(changes["rounds"], self.next_round - 1, 1)}
        try:
            self._upcoming, changed = with_changes(self._upcoming, changes)
        except ConfigError as err:  # checked by the controller against the same config
            self._publish(ev.WARNING, message=f"the ServerApp refused a change: {err}")
            return
        for change in changed:
            self._publish(
                ev.CONFIG_CHANGED,
                round=self.next_round,
                key=change.key,
                old=change.old,
                new=change.new,
                source=source,
            )


def clients_round_config(config: RunConfig, server_round: int) -> dict[str, Any]:
    """What may change between rounds and is the clients' to use (engine.app.client_app), for
    `server_round`: its learning rate as lr_schedule sets it, its local epochs or steps."""
    return {
        "learning-rate": round_learning_rate(
            config.learning_rate,
            config.min_learning_rate,
            config.lr_schedule,
            server_round,
            config.rounds,
        ),
        "local-epochs": config.local_epochs,
        "local-steps": config.local_steps,
        "client-eval": config.client_eval,
    }
