"""The run's notable events as lines; errors stand out. Step progress is left to the table."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from engine import events as ev
from tui import format as fmt
from tui.messages import NewEvents

QUIET = {ev.CLIENT_PROGRESS, ev.GPU_SAMPLE}
# ClientApps (and what they spawn) come and go every round: the clients table tells that story.
SHOWN_ROLES = {"superlink", "supernode", "serverapp"}


class EventLog(RichLog):
    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, min_width=20, max_lines=5_000, **kwargs)

    def on_new_events(self, message: NewEvents) -> None:
        if message.reset:
            self.clear()
        for event in message.events:
            line = describe(event)
            if line is not None:
                self.write(line)


def describe(event: ev.Event) -> Text | None:
    kind = event["type"]
    if kind in QUIET or ("role" in event and event["role"] not in SHOWN_ROLES):
        return None
    line = Text(fmt.clock_time(event.get("t")) + " ", style="dim")
    if kind == ev.RUN_STARTED:
        line.append(f"run {event['run_id']} started", style="bold")
    elif kind == ev.NOTICE:
        line.append(event["message"], style="italic")
    elif kind == ev.PROCESS_STARTED:
        line.append(f"{_who(event)} started (pid {event['pid']})", style="dim")
    elif kind == ev.PROCESS_EXITED:
        code = event.get("returncode")
        line.append(f"{_who(event)} exited (pid {event['pid']}"
                    f"{'' if code is None else f', code {code}'})", style="dim")
    elif kind == ev.ROUND_STARTED:
        line.append(f"round {event['round']} started with {event.get('clients', '?')} clients")
    elif kind == ev.CLIENT_ROUND_DONE:
        line.append(f"client {event['client']} finished round {event['round']}: train loss "
                    f"{fmt.loss(event['train_loss'])} on {event['examples']} examples")
    elif kind == ev.ROUND_DONE:
        train = event.get("train_loss")
        line.append(f"round {event['round']} done: ", style="bold")
        if train is not None:
            line.append(f"train {train:.4f}  ")
        if event["eval_loss"] is not None:
            line.append(f"eval {event['eval_loss']:.4f}", style="bold cyan")
        if event.get("seconds") is not None:
            line.append(f"  {event['seconds']:.1f} s")
    elif kind == ev.STOP_REQUESTED:
        line.append("stop requested: the run ends after the current round", style="bold yellow")
    elif kind == ev.EARLY_STOP:
        line.append(f"early stop after round {event['round']}: {event.get('reason', '')}; best "
                    f"round {event['best_round']}", style="bold yellow")
    elif kind == ev.RUN_FINISHED:
        style = "bold green" if event["status"] == "completed" else "bold yellow"
        if event["status"] in ("failed", "aborted"):
            style = "bold red"
        line.append(f"run {event['status']}", style=style)
    elif kind == ev.ERROR:
        line.append(f"ERROR {event['message']}", style="bold white on red")
    elif kind == ev.WARNING:
        line.append(f"WARNING {event['message']}", style="bold black on yellow")
    else:
        line.append(kind)
    return line


def _who(event: ev.Event) -> str:
    client = event.get("client")
    return event["role"] if client is None else f"{event['role']} {client}"
