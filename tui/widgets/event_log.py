"""The run's notable events as lines; errors stand out. Step progress is left to the table."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from engine.core import events as ev
from engine.core.describe import describe
from tui import format as fmt
from tui.messages import NewEvents

QUIET = {ev.CLIENT_PROGRESS, ev.GPU_SAMPLE}
# ClientApps (and what they spawn) come and go every round: the clients table tells that story.
SHOWN_ROLES = {"superlink", "supernode", "serverapp"}
STYLES = {
    ev.RUN_STARTED: "bold",
    ev.RUN_RESUMED: "bold",
    ev.NOTICE: "italic",
    ev.PROCESS_STARTED: "dim",
    ev.PROCESS_EXITED: "dim",
    ev.ROUND_DONE: "bold",
    ev.CHECKPOINT_SAVED: "green",
    ev.STOP_REQUESTED: "bold yellow",
    ev.EARLY_STOP: "bold yellow",
    ev.ERROR: "bold white on red",
    ev.WARNING: "bold black on yellow",
}


class EventLog(RichLog):
    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, min_width=20, max_lines=5_000, **kwargs)

    def on_new_events(self, message: NewEvents) -> None:
        if message.reset:
            self.clear()
        for event in message.events:
            line = log_line(event)
            if line is not None:
                self.write(line)


def log_line(event: ev.Event) -> Text | None:
    """The event's sentence after its time of day, or None for events the log leaves out."""
    kind = event["type"]
    process_event = kind in (ev.PROCESS_STARTED, ev.PROCESS_EXITED)
    if kind in QUIET or (process_event and event["role"] not in SHOWN_ROLES):
        return None
    style = (
        fmt.STATUS_STYLES.get(event["status"], "bold")
        if kind == ev.RUN_FINISHED
        else STYLES.get(kind, "")
    )
    line = Text(fmt.clock_time(event.get("t")) + " ", style="dim")
    line.append(describe(event), style=style)
    line.highlight_regex(r"eval loss \S+\d", "bold cyan")
    return line
