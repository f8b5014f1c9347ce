"""A run's status, as the record, the views and the exit code name it: one type for them all.

    created -> starting -> running (<-> held) -> stopping -> completed | stopped | aborted | failed

`starting` is how a record without events past its first reads; `interrupted` is what a record
without an end reads as once its controller is gone (killed, or the machine went down): it can
be resumed. `unreadable` is a run folder whose record cannot be read at all.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"  # a sweep member that has not started
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    HELD = "held"  # after a round, until it continues
    COMPLETED = "completed"
    STOPPED = "stopped"
    ABORTED = "aborted"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    UNREADABLE = "unreadable"


# How a run ended, as its `run_finished` event says.
FINAL = frozenset({Status.COMPLETED, Status.STOPPED, Status.ABORTED, Status.FAILED})
# What a run whose controller is alive reads as.
LIVE = frozenset({Status.STARTING, Status.RUNNING, Status.STOPPING, Status.HELD})
# What may go on with `--resume` (a completed run only with more rounds).
RESUMABLE = FINAL | {Status.INTERRUPTED}
# A run that ended without losing what it was asked to do: its clients' processes were done.
ENDED_WELL = frozenset({Status.COMPLETED, Status.STOPPED})

# fedtui's exit code for a run (or sweep) it watched to its end; any other status exits 1.
EXIT_CODES: dict[str | None, int] = {
    Status.COMPLETED: 0,
    Status.STOPPED: 0,
    Status.FAILED: 1,
    Status.ABORTED: 130,
}


def exit_code(status: str | None) -> int:
    return EXIT_CODES.get(status, 1)
