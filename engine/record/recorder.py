"""The run's record: the single writer of `runs/<id>/events.jsonl`.

Every event, the controller's own and those relayed from the Flower apps, goes through
`EventRecorder.write`: stamped, appended as one line and flushed, then handed to the subscribers
(the TUI, the headless printer) in the order it was written. A flushed line outlives fedtui
itself (SIGKILL included); to outlive a crash of the machine too, the file is synced to disk at
each round's start and end and at the run's end (`SYNCED`), so everything a round recorded is on
disk before the next round starts.

A record that cannot be written (a full disk, a lost folder) does not raise into whoever emitted
the event (an app's relay, a process watcher): the first failure is kept in `failure`, later
events still reach the subscribers, and the controller ends the run as failed with its reason.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from engine.core import events as ev
from engine.record.durable import sync_folder

Subscriber = Callable[[ev.Event], None]

log = logging.getLogger(__name__)

# round_done: the round up to its result (its checkpoint is recorded before it); round_started:
# what came between rounds (a live change, a restarted client); run_finished: the outcome.
# Three syncs a round cost next to nothing.
SYNCED = frozenset({ev.ROUND_STARTED, ev.ROUND_DONE, ev.RUN_FINISHED})


class EventRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()  # a subscriber may write in turn (a view's stop request)
        self._file: TextIO | None = None
        self.failure: OSError | None = None  # why the record could not be written, if so

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber(event)` for every event written from now on (from any thread)."""
        self._subscribers.append(subscriber)

    def open(self) -> None:
        """Start appending, to a new file or to a stopped run's record."""
        new = not self.path.exists()
        if not new:
            drop_torn_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open until close())
        if new:  # the file's name must reach the disk too, or a power cut takes the whole record
            sync_folder(self.path.parent)

    def write(self, event: ev.Event) -> None:
        """Record `event`, then hand it, as written, to every subscriber."""
        with self._lock:
            if self._file is None:
                raise RuntimeError(f"{self.path} is not open for writing")
            stamped = ev.stamp(event)
            if self.failure is None:
                try:
                    self._append(stamped)
                except OSError as err:
                    log.error("cannot write %s: %s", self.path, err)
                    self.failure = err
            for subscriber in self._subscribers:
                try:
                    subscriber(stamped)
                except Exception:  # a broken view must not break the record
                    log.exception("event subscriber failed")

    def _append(self, stamped: ev.Event) -> None:
        assert self._file is not None
        self._file.write(ev.encode(stamped))
        self._file.flush()
        if stamped["type"] in SYNCED:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                file, self._file = self._file, None
                try:
                    file.close()
                except OSError as err:  # what was left to flush could not be written
                    self.failure = self.failure or err


def drop_torn_tail(path: Path) -> None:
    """A crash can leave half a line (or, after a power cut, zeroed bytes) at the end; appending
    after it would corrupt the next line. Cut in place: rewriting the file could lose it all."""
    content = path.read_bytes()
    if content and not content.endswith(b"\n"):
        os.truncate(path, content.rfind(b"\n") + 1)
