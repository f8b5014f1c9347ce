"""One controller per run folder, and whether it is alive: a record without an end is a live run,
or the record of a controller that was killed (SIGKILL, a power cut) and can be resumed.

The controller holds `runs/<id>/controller.pid` from start to finish: an advisory lock on it
(`flock`), taken before anything is written, so that two controllers started at once (two
`--resume`s of one run) cannot both write its record, and in it its PID and start time (so a
reused PID is not taken for it), which name it to the one refused. The kernel lets the lock go
when the process ends, however it ends; the file stays, emptied by a controller that finishes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import psutil

from engine.core.errors import FedtuiError
from engine.core.status import FINAL, Status

LOCK_FILE = "controller.pid"


class RunHeld(FedtuiError):
    """Another controller holds the run."""


class Hold:
    """The lock on a run folder, held until `release` (or this process's end)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # no PID: nothing claims the run
            os.close(self._fd)  # lets the lock go
            self._fd = None


def hold(run_dir: Path) -> Hold:
    """Take the run: RunHeld naming the controller that has it already."""
    # Not inherited: a process the controller starts must not keep the run held after it.
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = live_controller(run_dir)
        who = f"controller pid {holder}" if holder is not None else "another controller"
        raise RunHeld(f"run {run_dir.name} is running ({who})") from None
    except BaseException:
        os.close(fd)
        raise
    process = psutil.Process()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{process.pid} {process.create_time()}\n".encode(), 0)
    return Hold(fd)


def status(run_dir: Path, recorded: str) -> str:
    """A run's status: as `recorded`, except that a record without an end whose controller is
    gone is `interrupted`, not running."""
    if recorded not in FINAL and live_controller(run_dir) is None:
        return Status.INTERRUPTED
    return recorded


def live_controller(run_dir: Path) -> int | None:
    """The PID of the controller still running `run_dir`, or None."""
    try:
        pid_text, created_text = (run_dir / LOCK_FILE).read_text().split()
        pid, created = int(pid_text), float(created_text)
    except (OSError, ValueError):
        return None
    with contextlib.suppress(psutil.Error):
        if psutil.Process(pid).create_time() == created:
            return pid
    return None
