"""A live run steered from outside its ServerApp: config changes, hold and continue.

A change is checked here first, exactly as `--set` checks a value and refused in one line when a key
cannot change in a live run (engine.core.live_config); nothing changes then. A valid change goes to
the ServerApp, the one that knows which round begins next: it acknowledges each key with a
`config_changed` event naming the round it applies from (engine.app.server.between_rounds), which is
what `change` returns. The run folder's config.toml follows, so `--resume` goes on with it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core import commands, events as ev
from engine.core.config import RunConfig
from engine.core.config_files import to_toml
from engine.core.errors import FedtuiError
from engine.core.live_config import change_between_rounds, with_changes
from engine.record import durable

# How long a change waits for the ServerApp to say from which round it applies: it reads its
# commands every fraction of a second, except while it evaluates or saves a checkpoint.
ACKNOWLEDGE_TIMEOUT_S = 30.0

# What a change gets back: the ServerApp's `config_changed` events, and the keys it has not
# answered for within ACKNOWLEDGE_TIMEOUT_S (its events will say, later).
Acknowledged = dict[str, list[Any]]


class RunSteering:
    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        send_to_server: Callable[[commands.Command], None],
        finished: Callable[[], bool],
    ) -> None:
        self.config = config  # what the run goes on with: every acknowledged change in it
        self._run_dir = run_dir
        self._send_to_server = send_to_server
        self._finished = finished
        self._one_at_a_time = threading.Lock()
        self._acknowledged: queue.Queue[ev.Event] = queue.Queue()

    def change(self, changes: dict[str, Any], source: str) -> Acknowledged:
        """Change live keys from the next round that begins: the ServerApp's `config_changed`
        events, and the keys it has not answered for in time. ConfigError when a key or a value
        is refused; nothing at all when no value would change."""
        with self._one_at_a_time:
            if self._finished():
                raise FedtuiError("the run has ended: nothing to change")
            _, changed = change_between_rounds(self.config, changes)
            if not changed:
                return {"changes": [], "unanswered": []}
            while not self._acknowledged.empty():  # answers to a change that timed out
                self._acknowledged.get_nowait()
            self._send_to_server(
                commands.make(
                    commands.SET,
                    changes={change.key: change.new for change in changed},
                    source=source,
                )
            )
            events = self._acknowledgements(len(changed))
            answered = {event["key"] for event in events}
            return {
                "changes": events,
                "unanswered": [c.key for c in changed if c.key not in answered],
            }

    def hold(self, source: str) -> None:
        """Hold the run after its current round: nothing trains, every process stays up."""
        self._ask(commands.HOLD, source)

    def continue_run(self, source: str) -> None:
        """Go on with a held run (or cancel a hold not yet reached)."""
        self._ask(commands.CONTINUE, source)

    def on_server_event(self, event: ev.Event) -> None:
        """An event from the ServerApp: an acknowledged change is the config from now on."""
        if event["type"] != ev.CONFIG_CHANGED:
            return
        self.config, _ = with_changes(self.config, {event["key"]: event["new"]})
        durable.replace_text(self._run_dir / durable.CONFIG_FILE, to_toml(self.config))
        self._acknowledged.put(event)

    def _ask(self, name: str, source: str) -> None:
        if self._finished():
            raise FedtuiError("the run has ended")
        self._send_to_server(commands.make(name, source=source))

    def _acknowledgements(self, count: int) -> list[ev.Event]:
        deadline = time.monotonic() + ACKNOWLEDGE_TIMEOUT_S
        events: list[ev.Event] = []
        while len(events) < count and (left := deadline - time.monotonic()) > 0:
            try:
                events.append(self._acknowledged.get(timeout=left))
            except queue.Empty:
                break
        return events
