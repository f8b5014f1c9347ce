"""What keeps the event channel (engine.net.channel) safe from peers that are not fedtui's apps: a
deadline on each peer's handshake, and a report of what was refused that a flood of garbage
cannot turn into a flood of events."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection


def shut_down(connection: Connection) -> None:
    """End the connection's reads, also one blocked in another thread (closing the file
    descriptor would not wake it)."""
    with (
        contextlib.suppress(OSError),
        socket.fromfd(connection.fileno(), socket.AF_INET, socket.SOCK_STREAM) as duplicate,
    ):
        duplicate.shutdown(socket.SHUT_RDWR)


class Deadline:
    """Shuts a connection down unless cancelled within `seconds`."""

    def __init__(self, connection: Connection, seconds: float) -> None:
        self.passed = False
        self._connection = connection
        self._cancelled = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        """Once this returns, the connection will not be touched (the caller may close it)."""
        with self._lock:
            self._cancelled = True
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if not self._cancelled:
                self.passed = True
                shut_down(self._connection)


class RejectionReport:
    """Counts refusals and reports them: the first at once, then whatever came after in one
    summary per interval, so a flood of garbage is one or two lines in the record."""

    def __init__(self, report: Callable[[str], None], interval_s: float) -> None:
        self._report = report
        self._interval_s = interval_s
        self._counts: Counter[str] = Counter()
        self._unreported: Counter[str] = Counter()
        self._quiet_until = 0.0
        self._timer: threading.Timer | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        with self._lock:
            return self._counts.total()

    def by_reason(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def add(self, reason: str, what: str) -> None:
        with self._lock:
            self._counts[reason] += 1
            now = time.monotonic()
            if now < self._quiet_until or self._closed:
                self._unreported[reason] += 1
                if self._timer is None and not self._closed:
                    self._timer = threading.Timer(self._quiet_until - now, self._flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._quiet_until = now + self._interval_s
        self._report(what)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if not self._unreported:
                return
            count = self._unreported.total()
            reasons = ", ".join(f"{n} {reason}" for reason, n in self._unreported.most_common())
            self._unreported.clear()
            self._quiet_until = time.monotonic() + self._interval_s
        self._report(
            f"rejected {count} more since the last report ({reasons}); "
            f"at most one report every {self._interval_s:g} s"
        )
