"""Whether a run's controller is alive: a record without an end is a live run, or the record of a
controller that was killed (SIGKILL, a power cut) and can be resumed.

The controller holds `runs/<id>/controller.pid` (its PID and start time, so a reused PID is not
taken for it) from start to finish.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil

from engine.core.status import FINAL, Status

LOCK_FILE = "controller.pid"


def hold(run_dir: Path) -> None:
    process = psutil.Process()
    (run_dir / LOCK_FILE).write_text(f"{process.pid} {process.create_time()}\n")


def release(run_dir: Path) -> None:
    (run_dir / LOCK_FILE).unlink(missing_ok=True)


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
