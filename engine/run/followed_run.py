"""Following a run whose controller is another process: its record as it is written, and its
control socket to steer it.

    run = FollowedRun(Path("runs/<id>"))
    run.subscribe(print)      # every recorded event, from the first, then each new one
    run.start()
    run.request_stop()        # through runs/<id>/control.sock (engine.net.control_socket)
    run.change_config({"learning_rate": 5e-4})   # from the next round; hold(), continue_run()
    run.detach()              # a leashed run goes on without this process
    run.wait()                # -> final status

Any number of followers may read one run at once: each reads the file on its own and never
writes to it. A run whose controller dies without recording its end is shown as failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core import commands, events as ev
from engine.core.status import Status
from engine.net import control_socket as control
from engine.record import run_lock
from engine.record.run_folders import EVENTS_FILE
from engine.run.steering import ACKNOWLEDGE_TIMEOUT_S, Acknowledged

POLL_S = 0.1


class FollowedRun:
    def __init__(self, run_dir: Path, leashed: bool = False) -> None:
        """`leashed`: this process started the run's controller, which ends the run if this
        process dies before `detach()`."""
        self.run_dir = run_dir
        self.run_id = run_dir.name
        self.detached = not leashed
        # What the follower itself needs of the events it hands on (a viewer folds them into
        # its own RunState): how the run ended, and whether its clients were served.
        self._outcome: str | None = None
        self._served = False
        self._subscribers: list[Callable[[ev.Event], None]] = []
        self._finished = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="follow", daemon=True)

    @property
    def status(self) -> str:
        """How the run ended, once it has; `running` until then."""
        return self._outcome or Status.RUNNING

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def subscribe(self, subscriber: Callable[[ev.Event], None]) -> None:
        """Call `subscriber(event)` for every event of the run, from the follower's thread."""
        self._subscribers.append(subscriber)

    def start(self) -> FollowedRun:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop reading (the run itself goes on)."""
        self._closed.set()

    def request_stop(self, source: str = "viewer") -> None:
        self._ask(commands.make(commands.STOP, source=source))

    def abort(self) -> None:
        self._ask(commands.make(commands.ABORT))

    def change_config(self, changes: dict[str, Any], source: str = "viewer") -> Acknowledged:
        """Change live keys from the next round on: the ServerApp's `config_changed` events,
        and the keys it has not answered for yet (engine.run.steering)."""
        reply = control.send(
            self.run_dir,
            commands.make(commands.SET, changes=changes, source=source),
            timeout_s=ACKNOWLEDGE_TIMEOUT_S + 10,
        )
        return {"changes": reply["changes"], "unanswered": reply["unanswered"]}

    def hold(self, source: str = "viewer") -> None:
        self._ask(commands.make(commands.HOLD, source=source))

    def continue_run(self, source: str = "viewer") -> None:
        self._ask(commands.make(commands.CONTINUE, source=source))

    def detach(self) -> None:
        if not self.detached and not self.finished:
            self._ask(commands.make(commands.DETACH))
        self.detached = True

    def wait(self, timeout: float | None = None) -> str | None:
        self._finished.wait(timeout)
        return self.status if self.finished else None

    def _ask(self, request: dict) -> None:
        """Send a request; one the controller can no longer hear (the run has just ended) is
        moot, but a refusal is the caller's to show."""
        try:
            control.send(self.run_dir, request)
        except control.NotRunning:
            if not self.finished:
                raise

    # -- the reading thread ---------------------------------------------------------------

    def _follow(self) -> None:
        path = self.run_dir / EVENTS_FILE
        offset, pending = 0, b""
        while not self._closed.is_set():
            # A controller drops its lock only after recording the end (or the end of a resumed
            # part: a record may hold several), so a read after the lock is gone is the last.
            controller_gone = run_lock.live_controller(self.run_dir) is None
            with open(path, "rb") as record:
                record.seek(offset)
                data = record.read()
            offset += len(data)
            lines = (pending + data).split(b"\n")
            pending = lines.pop()  # a line still being written, or b""
            for line in lines:
                if line.strip():
                    self._deliver_line(line)
            if controller_gone:
                if self._outcome is None:
                    self._deliver_end_of_killed_run()
                break
            self._closed.wait(POLL_S)
        self._finished.set()

    def _deliver_end_of_killed_run(self) -> None:
        """What the views show (the record is left as it is: `fedtui runs` says interrupted)."""
        command = "serve" if self._served else "run"
        message = (
            f"the run's controller is gone without recording an end (killed?): "
            f"fedtui {command} --resume {self.run_dir} goes on from its last model"
        )
        self._deliver(ev.stamp(ev.make(ev.ERROR, source="controller", message=message)))
        self._deliver(ev.stamp(ev.make(ev.RUN_FINISHED, status=Status.FAILED)))

    def _deliver_line(self, line: bytes) -> None:
        try:
            event = ev.parse_line(line)
        except ValueError:
            return  # damage the readers of the finished record report; a live view skips it
        self._deliver(event)

    def _deliver(self, event: ev.Event) -> None:
        kind = event["type"]
        if kind == ev.RUN_FINISHED:
            self._outcome = event["status"]
        elif kind == ev.RUN_RESUMED:  # a record holds every part of a run that went on
            self._outcome = None
        elif kind in (ev.WAITING_FOR_CLIENTS, ev.CLIENT_JOINED):
            self._served = True
        for subscriber in self._subscribers:
            subscriber(event)
