"""Plain-text progress for `fedtui run --headless` (and `fedtui sweep --headless`): one line per
round, live client progress."""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
from collections.abc import Iterator
from typing import TextIO

from engine.core import events as ev
from engine.core.describe import describe
from engine.core.status import Status, exit_code
from engine.record.run_state import RunState
from engine.run.controller import RunController
from engine.run.followed_run import FollowedRun
from engine.run.sweep import Sweep
from tui.format import run_table_header, run_table_row

# The run's own milestones start a line; what happens within it is indented beneath them.
MILESTONES = {ev.RUN_STARTED, ev.RUN_RESUMED, ev.ROUND_DONE, ev.RUN_FINISHED}
DETAILS = {
    ev.NOTICE,
    ev.MODEL_INFO,
    ev.PARTITION_SUMMARY,
    ev.CLIENT_EVAL,
    ev.CHECKPOINT_SAVED,
    ev.EARLY_STOPPING_CHANGED,
    ev.WARNING,
    ev.STOP_REQUESTED,
    ev.EARLY_STOP,
    ev.ERROR,
    ev.CLIENT_CRASHED,
    ev.CLIENT_RESTARTED,
    ev.WAITING_FOR_CLIENTS,
    ev.CLIENT_JOINED,
}


class HeadlessPrinter:
    """Turns events into lines. On a terminal, client progress rewrites one status line; in a
    log file it is printed at each quarter of the local steps."""

    def __init__(self, out: TextIO, live_line: bool, prefix: str = "") -> None:
        self.out = out
        self.live_line = live_line
        self.prefix = prefix  # a sweep member's name, on each of its lines
        self.state = RunState()
        self._status_width = 0
        self._quarters_shown: dict[tuple[int, int], int] = {}

    def show(self, event: ev.Event) -> None:
        self.state.apply(event)
        kind = event["type"]
        if kind == ev.CLIENT_PROGRESS:
            self._progress(event)
        elif kind in MILESTONES or kind in DETAILS:
            self._print(self.prefix + ("" if kind in MILESTONES else "  ") + describe(event))

    def _progress(self, event: ev.Event) -> None:
        if self.live_line:
            parts = [
                f"client {c.client} {c.step}/{c.steps_total} loss {c.loss:.3f}"
                for c in self.state.clients.values()
                if c.state == "training" and c.loss
            ]
            text = f"{self.prefix}  round {event['round']}: " + " | ".join(parts)
            self.out.write("\r" + text.ljust(self._status_width))
            self.out.flush()
            self._status_width = len(text)
            return
        key = (event["round"], event["client"])
        quarter = 4 * event["step"] // max(event["steps_total"], 1)
        if quarter > self._quarters_shown.get(key, 0):
            self._quarters_shown[key] = quarter
            self._print(f"{self.prefix}  " + describe(event))

    def _print(self, line: str) -> None:
        if self._status_width:  # clear the client progress line first
            self.out.write("\r" + " " * self._status_width + "\r")
            self._status_width = 0
        print(line, file=self.out, flush=True)


def run_headless(controller: RunController, out: TextIO = sys.stdout) -> int:
    """Run to the end, printing progress. First Ctrl+C stops after this round, second aborts."""
    inbox: queue.Queue[ev.Event] = queue.Queue()
    controller.subscribe(inbox.put)
    printer = HeadlessPrinter(out, live_line=out.isatty())
    with _interrupts_stop_then_abort(controller, out):
        controller.start()
        _print_until_finished(controller, inbox, printer)
    print(f"  run folder: {controller.run_dir}", file=out, flush=True)
    if printer.state.best_checkpoint_round is not None:
        print(
            f"  best model (round {printer.state.best_checkpoint_round}, eval loss "
            f"{printer.state.best_eval_loss:.4f}): {controller.run_dir / 'checkpoints' / 'best'}"
            f"  (AutoModelForCausalLM.from_pretrained loads it)",
            file=out,
            flush=True,
        )
    if controller.input_error is not None:
        print(f"fedtui: error: {controller.input_error}", file=sys.stderr)
        return 2
    return exit_code(controller.status)


def sweep_headless(sweep: Sweep, out: TextIO = sys.stdout) -> int:
    """Run every member, printing each one's progress under its name, then the comparison.
    First Ctrl+C stops the members running now after their round (and the sweep), second
    aborts."""
    inbox: queue.Queue[tuple[str, ev.Event]] = queue.Queue()
    sweep.subscribe(lambda member, event: inbox.put((member, event)))
    live_line = out.isatty() and sweep.parallel == 1
    printers = {
        m.name: HeadlessPrinter(out, live_line, prefix=f"[{m.name}] ") for m in sweep.members
    }
    print(f"sweep {sweep.sweep_id}: {len(sweep.members)} members, {sweep.parallel} at a time")
    with _interrupts_stop_then_abort(sweep, out):
        sweep.start()
        while not (sweep.finished and inbox.empty()):
            try:
                member, event = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            printers[member].show(event)
    print(f"sweep {sweep.status}: {sweep.sweep_dir}", file=out)
    print_comparison([(name, p.state) for name, p in printers.items()], out)
    return exit_code(sweep.status)


def print_comparison(states: list[tuple[str, RunState]], out: TextIO) -> None:
    """One line per run: its status, rounds, best and final eval, wall time, bytes."""
    width = max([len("RUN"), *(len(name) for name, _ in states)])
    print(run_table_header(width), file=out)
    for name, state in states:
        print(run_table_row(name, state.status, state, width), file=out)


@contextlib.contextmanager
def _interrupts_stop_then_abort(run: RunController | Sweep, out: TextIO) -> Iterator[None]:
    """While the block runs, the first Ctrl+C stops `run` after its round, the second aborts."""

    def on_interrupt(signum, frame) -> None:
        if run.status == Status.STOPPING:
            print("\n  aborting: ending every process now", file=out, flush=True)
            run.abort()
        else:
            print(
                "\n  Ctrl+C: stopping after the current round (Ctrl+C again to abort)",
                file=out,
                flush=True,
            )
            run.request_stop(source="signal")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def follow_headless(run: FollowedRun, out: TextIO = sys.stdout) -> int:
    """Print a run another process controls until it ends; Ctrl+C leaves it running."""
    inbox: queue.Queue[ev.Event] = queue.Queue()
    run.subscribe(inbox.put)
    printer = HeadlessPrinter(out, live_line=out.isatty())
    run.start()
    try:
        _print_until_finished(run, inbox, printer)
    except KeyboardInterrupt:
        run.close()
        print(f"\n  left run {run.run_id} running (fedtui stop {run.run_dir} ends it)", file=out)
        return 0
    return exit_code(run.status)


def _print_until_finished(
    run: RunController | FollowedRun, inbox: queue.Queue[ev.Event], printer: HeadlessPrinter
) -> None:
    while not (run.finished and inbox.empty()):
        try:
            printer.show(inbox.get(timeout=0.2))
        except queue.Empty:
            continue
