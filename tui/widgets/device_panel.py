"""One line per run: each GPU's memory and utilisation, or why there are no GPU figures."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.core import events as ev
from engine.core.units import byte_size
from engine.record.run_state import RunState
from tui.messages import RunsChanged


class DevicePanel(Static):
    def on_runs_changed(self, message: RunsChanged) -> None:
        self.update(describe_devices(message.states[0]))


def describe_devices(state: RunState) -> Text:
    if state.gpu_unavailable:
        return Text(
            f" no NVIDIA GPU: VRAM unavailable ({state.gpu_unavailable}); memory "
            f"column shows host RSS",
            style="dim italic",
        )
    if not state.devices:
        waiting = not state.finished and not state.imported_from
        return Text(
            " GPUs: waiting for the first sample"
            if waiting
            else " GPUs: no memory samples in this record",
            style="dim",
        )
    line = Text()
    for device in state.devices:
        if device.get("lost"):
            line.append(f" GPU{device['index']} LOST ", style="bold white on red")
            continue
        used, total = device.get("memory_used"), device.get("memory_total")
        share = used / total if used is not None and total else None
        style = "bold red" if share is not None and share >= ev.MEMORY_WARNING_FRACTION else ""
        line.append(f" GPU{device['index']} ", style="bold")
        line.append(
            f"{device.get('name', '')} {byte_size(used)}/{byte_size(total)}"
            + (f" ({share:.0%})" if share is not None else ""),
            style=style,
        )
        utilization = device.get("utilization")
        line.append(f" util {utilization}%" if utilization is not None else " util n/a")
        line.append("  ")
    return line
