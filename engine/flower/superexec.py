"""Flower's `flower-superexec`, asking for a task only when none it started is running.

SuperExec asks the SuperLink (for the ServerApp) or a SuperNode (for each ClientApp) for a task
every second (FLWR_SUPEREXEC_TASK_POLL_INTERVAL), whether or not the task it launched last still
runs (`flwr/supercore/superexec/run_superexec.py`). Each ask costs CPU on both sides: with the
SuperLink's SuperExec asking every 10 s instead, the two took 1.6% of a core less
(BENCHMARKS.md, "Training speed"), a core the training threads of a small machine need. In
fedtui a SuperExec's next task never comes while its last one runs: a run has one ServerApp,
and a SuperNode hands out a client's next message only once the ClientApp has replied to the
last. So the loop's `time` is swapped (engine.flower.internals: SUPEREXEC_TIME) for one whose
sleep, while a task process this SuperExec started is running, lasts until one ends (at most
BUSY_WAIT_S, should a task come anyway), and is Flower's otherwise. fedtui's guard of
`flower-superexec` (engine.flower.home) swaps it before Flower's entry point runs.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path

from engine.flower import internals

BUSY_WAIT_S = 10.0


class SleepsWhileBusy(internals.TimeWithOwnSleep):
    """The `time` module, but a sleep lasts until a running child ends, if one runs."""

    @staticmethod
    def sleep(seconds: float) -> None:
        running = running_children()
        if not running:
            time.sleep(seconds)
            return
        with contextlib.ExitStack() as pidfds:
            poller = select.poll()
            try:
                for pid in running:
                    pidfd = os.pidfd_open(pid)
                    pidfds.callback(os.close, pidfd)
                    poller.register(pidfd, select.POLLIN)
            except ProcessLookupError:  # it ended, and was reaped, meanwhile
                return
            except OSError:  # no pidfds: a kernel before 5.3
                time.sleep(seconds)
                return
            poller.poll(BUSY_WAIT_S * 1000)


def running_children() -> list[int]:
    """This process's children that have not ended (an ended child nobody has reaped yet, as
    Flower's launches are, is left out)."""
    children: list[int] = []
    for listing in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children += [int(pid) for pid in listing.read_text().split()]
    return [pid for pid in children if _state(pid) not in ("Z", "X", None)]


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split(b" ", 1)[0].decode()


def ask_less_while_a_task_runs() -> None:
    internals.swap(internals.SUPEREXEC_TIME, SleepsWhileBusy())
