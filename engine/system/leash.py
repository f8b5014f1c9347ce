"""A controller's leash: the process whose death ends the run, until it detaches.

A TUI starts its run's controller as a process of its own (so that the run can outlive it when
asked to); while the TUI has not detached, the controller aborts the run once the TUI is gone, so
that killing fedtui still leaves nothing running.
"""

from __future__ import annotations

import psutil

from engine.core.errors import FedtuiError


class Leash:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise FedtuiError(f"process {pid}, which the run is leashed to, is gone") from None

    @property
    def holder_gone(self) -> bool:
        """Whether the holder has ended: a dead child its parent has not reaped yet has."""
        try:
            return not self._process.is_running() or self._process.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True
