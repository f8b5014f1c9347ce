"""A live run mirrored to its `report_to` trackers: a subscriber of the controller's record.

    controller.subscribe(LiveMirror.for_run(config.report_to, run_dir, emit))

The trackers work on a thread of their own: a tracker that is slow or hangs (a remote MLflow
retrying for minutes) must not hold up the record, which every event passes through. What the
trackers have to say (a warning when one fails, W&B's offline notice) is recorded as the next event
comes through the subscriber, never from that thread: the record's lock may be held by a writer
waiting on it. At `run_finished` the subscriber waits, at most FINISH_TIMEOUT_S, for the trackers
to close their runs, so a run has ended only once its trackers have it all; what they say then
follows `run_finished` in the record.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from engine.core import events as ev
from engine.record.run_folders import SWEEP_FILE
from engine.record.trackers.mirror import TrackedRun, TrackerMirror, open_tracker

FINISH_TIMEOUT_S = 60.0
TENSORBOARD_FOLDER = "tensorboard"  # in the run folder

log = logging.getLogger(__name__)


class LiveMirror:
    def __init__(self, names: list[str], run_dir: Path, emit: Callable[[ev.Event], None]) -> None:
        """The mirror of the run in `run_dir`, named by its folder and grouped by its sweep's;
        `emit`: how an event is recorded."""
        self._names = names
        self._tensorboard_dir = run_dir / TENSORBOARD_FOLDER
        sweep = run_dir.parent.name if (run_dir.parent / SWEEP_FILE).is_file() else None
        self._run = TrackedRun(run_dir.name, sweep)
        self._emit = emit
        self._outbox: collections.deque[ev.Event] = collections.deque()
        self._events: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="trackers", daemon=True)
        self._thread.start()

    def __call__(self, event: ev.Event) -> None:
        self._events.put(event)
        if event["type"] == ev.RUN_FINISHED:
            self._thread.join(FINISH_TIMEOUT_S)
            if self._thread.is_alive():
                self._warn(
                    f"report_to: the trackers did not close their runs within "
                    f"{FINISH_TIMEOUT_S:g} s; what they hold may lack the run's end"
                )
        self._flush()

    def _work(self) -> None:
        """The trackers' thread: they are made here, as their imports are slow."""
        trackers = [open_tracker(name, self._tensorboard_dir, self._notice) for name in self._names]
        mirror = TrackerMirror(trackers, self._run, self._warn)
        while True:
            event = self._events.get()
            try:
                mirror.apply(event)
            except Exception:  # a fold that fails is the mirror's end, never the run's
                log.exception("mirroring to trackers failed")
                self._warn("report_to: mirroring failed; the trackers get nothing more")
                return
            if event["type"] == ev.RUN_FINISHED:
                return

    def _notice(self, message: str) -> None:
        self._outbox.append(ev.make(ev.NOTICE, message=message))

    def _warn(self, message: str) -> None:
        self._outbox.append(ev.make(ev.WARNING, message=message))

    def _flush(self) -> None:
        while True:
            try:
                event = self._outbox.popleft()
            except IndexError:
                return
            self._emit(event)
