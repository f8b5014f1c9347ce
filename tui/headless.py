"""Plain-text progress for `fedtui run --headless`: one line per round, live client progress."""

from __future__ import annotations

import queue
import signal
import sys
from typing import TextIO

from engine import events as ev
from engine.config import describe_strategy
from engine.controller import RunController
from engine.run_state import RunState
from tui import format as fmt

EXIT_CODES = {"completed": 0, "stopped": 0, "failed": 1, "aborted": 130}


class HeadlessPrinter:
    """Turns events into lines. On a terminal, client progress rewrites one status line; in a
    log file it is printed at each quarter of the local steps."""

    def __init__(self, out: TextIO, live_line: bool) -> None:
        self.out = out
        self.live_line = live_line
        self.state = RunState()
        self._status_width = 0
        self._quarters_shown: dict[tuple[int, int], int] = {}

    def show(self, event: ev.Event) -> None:
        self.state.apply(event)
        kind = event["type"]
        if kind == ev.CLIENT_PROGRESS:
            self._progress(event)
            return
        line = self._line(event)
        if line is not None:
            self._clear_status()
            print(line, file=self.out, flush=True)

    def _line(self, event: ev.Event) -> str | None:
        kind, state = event["type"], self.state
        if kind == ev.RUN_STARTED:
            c = event["config"]
            return (f"run {event['run_id']}: {c['model']} on {c['dataset']}, "
                    f"{describe_strategy(c)}, {c['num_clients']} clients x {c['samples_per_client']} "
                    f"samples, {c['rounds']} rounds")
        if kind == ev.NOTICE:
            return f"  {event['message']}"
        if kind == ev.ROUND_DONE:
            train, evaluated = event.get("train_loss"), event["eval_loss"]
            train_text = f"train {train:.4f}" if train is not None else " " * 12
            eval_text = f"eval {evaluated:.4f}" if evaluated is not None else " " * 11
            return (f"round {event['round']:>3}  {train_text}  {eval_text}  "
                    f"{event.get('seconds') or 0:6.1f} s")
        if kind == ev.STOP_REQUESTED:
            return "  stop requested: the run ends after the current round"
        if kind == ev.EARLY_STOP:
            return f"  early stop after round {event['round']}: {event.get('reason', '')}"
        if kind == ev.EARLY_STOPPING_CHANGED:
            return (f"  early stopping {'on' if event['enabled'] else 'off'}, patience "
                    f"{event['patience']}")
        if kind == ev.ERROR:
            return f"  error: {event['message']}"
        if kind == ev.WARNING:
            return f"  warning: {event['message']}"
        if kind == ev.RUN_FINISHED:
            best = ""
            if state.best_round is not None:
                best = f", best eval loss {state.best_eval_loss:.4f} at round {state.best_round}"
            return (f"run {event['status']}: {state.rounds_completed} round(s){best}, "
                    f"{_duration(event.get('seconds') or 0)}")
        return None

    def _progress(self, event: ev.Event) -> None:
        if self.live_line:
            parts = [f"client {c.client} {c.step}/{c.steps_total} loss {c.loss:.3f}"
                     for c in self.state.clients.values() if c.state == "training" and c.loss]
            text = f"  round {event['round']}: " + " | ".join(parts)
            self.out.write("\r" + text.ljust(self._status_width))
            self.out.flush()
            self._status_width = len(text)
            return
        key = (event["round"], event["client"])
        quarter = 4 * event["step"] // max(event["steps_total"], 1)
        if quarter > self._quarters_shown.get(key, 0):
            self._quarters_shown[key] = quarter
            print(f"  round {event['round']} client {event['client']}: step {event['step']}/"
                  f"{event['steps_total']} loss {fmt.loss(event.get('loss'))}", file=self.out,
                  flush=True)

    def _clear_status(self) -> None:
        if self._status_width:
            self.out.write("\r" + " " * self._status_width + "\r")
            self._status_width = 0


def run_headless(controller: RunController, out: TextIO = sys.stdout) -> int:
    """Run to the end, printing progress. First Ctrl+C stops after this round, second aborts."""
    inbox: queue.Queue[ev.Event] = queue.Queue()
    controller.subscribe(inbox.put)
    printer = HeadlessPrinter(out, live_line=out.isatty())

    def on_interrupt(signum, frame) -> None:
        if controller.status == "stopping":
            print("\n  aborting: ending every process now", file=out, flush=True)
            controller.abort()
        else:
            print("\n  Ctrl+C: stopping after the current round (Ctrl+C again to abort)",
                  file=out, flush=True)
            controller.request_stop(source="signal")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        controller.start()
        while not (controller.finished and inbox.empty()):
            try:
                printer.show(inbox.get(timeout=0.2))
            except queue.Empty:
                continue
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"  run folder: {controller.run_dir}", file=out, flush=True)
    if printer.state.best_checkpoint_round is not None:
        print(f"  best model (round {printer.state.best_checkpoint_round}, eval loss "
              f"{printer.state.best_eval_loss:.4f}): {controller.run_dir / 'checkpoints' / 'best'}"
              f"  (AutoModelForCausalLM.from_pretrained loads it)", file=out, flush=True)
    if controller.input_error is not None:
        print(f"fedtui: error: {controller.input_error}", file=sys.stderr)
        return 2
    return EXIT_CODES.get(controller.status, 1)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
