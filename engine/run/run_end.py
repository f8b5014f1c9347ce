"""The end of a run, which must come however the run went: its processes ended, its last events
written (or, where the disk is full, at least handed to the views), its record closed. The
controller's `finished` flag, which `wait()` and every view wait on, is set after this whatever
it met: a step that fails is logged and the next one still runs.
"""

from __future__ import annotations

import atexit
import logging
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core import events as ev
from engine.record.recorder import EventRecorder
from engine.system.processes import ProcessTable

log = logging.getLogger(__name__)

# The processes of every run whose end has not come yet.
unfinished: weakref.WeakSet[ProcessTable] = weakref.WeakSet()


@atexit.register
def _end_processes_of_unfinished_runs() -> None:
    """fedtui is exiting (the runs' supervisor threads die with it): end what they started."""
    for processes in list(unfinished):
        processes.terminate_all(grace_s=2.0)


class RecordFailed(Exception):
    """The run's record cannot be written (a full disk, a lost folder): the run cannot go on,
    since nothing it does would be kept."""

    def __init__(self, path: Path, err: OSError) -> None:
        super().__init__(f"cannot write the run's record {path}: {err.strerror or err}")


def each(steps: list[Callable[[], Any]]) -> None:
    """Run every step, whatever the ones before it raised (each failure logged)."""
    for step in steps:
        try:
            step()
        except Exception:
            log.exception("ending the run: %s failed", getattr(step, "__name__", step))


def crash_report(run_dir: Path) -> None:
    """The traceback of an unexpected failure, for logs/controller.log, where it can be written."""
    try:
        (run_dir / "logs" / "controller.log").write_text(traceback.format_exc())
    except OSError:
        log.debug("controller.log not written", exc_info=True)


def write_end(
    record: EventRecorder,
    status: str,
    error: str | None,
    outcome: ev.Event,
    seconds: float,
) -> None:
    """The run's error, if any, and `run_finished`; then the record is closed. The recorder
    never raises for a full disk: the views still get both events."""
    if error:
        record.write(ev.make(ev.ERROR, source="controller", message=error))
    record.write(
        ev.make(
            ev.RUN_FINISHED,
            status=status,
            rounds_completed=outcome.get("rounds_completed"),
            best_round=outcome.get("best_round"),
            best_eval_loss=outcome.get("best_eval_loss"),
            seconds=seconds,
        )
    )
    record.close()
