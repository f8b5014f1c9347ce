"""One client of a run as the views show it: its state, progress and memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.events import MEMORY_REARM_FRACTION

# A client's state, as the clients table shows it:
#   waiting     between rounds, or sampled and not yet training (also after a restart)
#   idle        not sampled for this round (clients_per_round)
#   training    sent step progress this round
#   failed      the ServerApp gave up on its reply this round (an `error` naming the client)
#   restarting  one of its processes died; the controller is starting it again
#   crashed     one of its processes died and will not be started again (a client that goes on
#               without it, as one past its worker restarts does, trains again in a later round)
#   done        the run completed or stopped with the client up
#   ended       the run was aborted or failed with the client up
DOWN = ("restarting", "crashed")
UP = ("waiting", "training", "idle")


MEMORY_HISTORY = 40  # samples behind the clients table's sparkline
# Points of the memory-over-time chart: past twice this many, neighbours merge into their peak,
# so a run of any length keeps the whole run's shape in bounded memory.
MEMORY_OVER_TIME_POINTS = 600


@dataclass
class ClientState:
    client: int
    state: str = "waiting"
    round: int | None = None
    step: int = 0
    steps_total: int = 0
    loss: float | None = None
    steps_per_second: float | None = None
    last_train_loss: float | None = None
    round_started_at: float | None = None
    rss_bytes: int | None = None
    vram_bytes: int | None = None
    vram_source: str | None = None  # "nvml", or "torch" (the ClientApp's own count)
    vram_peak_round: int | None = None
    vram_peak: int | None = None
    device: int | None = None
    device_fraction: float | None = None
    memory_history: list[int] = field(default_factory=list)  # VRAM where known, else RSS
    memory_over_time: list[tuple[float, int]] = field(default_factory=list)  # (t, bytes)
    memory_warning: bool = False
    crashes: int = 0
    last_crash: str | None = None  # "worker exited with code -9 in round 3"
    crash_round: int | None = None
    address: str | None = None  # where a client on another host joined from

    def down_at(self, round_: int | None) -> bool:
        """Whether the client is still down for an event about `round_`: what its processes
        sent about the round they died in can be folded after the crash, and is no sign of
        life; a later round's is."""
        if self.state not in DOWN:
            return False
        return self.crash_round is not None and (round_ is None or round_ <= self.crash_round)

    def round_started(self, number: int, chosen: bool) -> None:
        """A round started; `chosen`: the client was sampled for it."""
        if self.state in ("failed", *DOWN):
            return
        # a client on another host sends no steps: it trains from when it is sent the model
        self.state = ("training" if self.address else "waiting") if chosen else "idle"
        self.round = number
        self.step = self.steps_total = 0
        self.loss = self.steps_per_second = None
        self.round_started_at = None
        self.vram_peak_round = None

    def progress(self, event: dict[str, Any]) -> None:
        """A `client_progress` event: a local step."""
        if self.down_at(event["round"]):
            return
        now = event.get("t")
        if self.round != event["round"] or self.round_started_at is None:
            self.round = event["round"]
            self.round_started_at = now
        self.state = "training"
        self.step = event["step"]
        self.steps_total = event["steps_total"]
        self.loss = event.get("loss")
        if event.get("vram_bytes") is not None and self.vram_source != "nvml":
            self.record_vram(event["vram_bytes"], "torch")
        if now is not None and self.round_started_at is not None and now > self.round_started_at:
            self.steps_per_second = self.step / (now - self.round_started_at)

    def round_done(self, event: dict[str, Any]) -> None:
        """A `client_round_done` event: the client's reply to a round."""
        if not self.down_at(event["round"]):
            self.state = "waiting"
        self.round = event["round"]
        self.step = self.steps_total = event.get("steps", self.steps_total)
        self.last_train_loss = event["train_loss"]
        if self.address and event.get("peak_rss_bytes"):  # no sampler sees another host
            self.rss_bytes = event["peak_rss_bytes"]
            self.record_memory(event.get("t"), event.get("peak_vram_bytes") or self.rss_bytes)

    def memory_sample(
        self, sample: dict[str, Any], device_totals: dict[int, int | None], t: float | None
    ) -> None:
        """One client's part of a `gpu_sample` event."""
        self.rss_bytes = sample.get("rss_bytes")
        if sample.get("source") == "nvml":
            self.device = sample.get("device")
            self.record_vram(sample["vram_bytes"], "nvml")
        elif self.vram_source == "nvml":  # no ClientApp on the GPU right now
            self.vram_bytes = 0
        total = device_totals.get(self.device) if self.device is not None else None
        self.device_fraction = (
            self.vram_bytes / total if total and self.vram_bytes is not None else None
        )
        if self.device_fraction is not None and self.device_fraction < MEMORY_REARM_FRACTION:
            self.memory_warning = False
        shown = self.vram_bytes if self.vram_source else self.rss_bytes
        if shown is not None:
            self.record_memory(t, shown)

    def crashed(self, event: dict[str, Any], cause: str) -> None:
        """A `client_crashed` event: one of its processes died."""
        self.state = "restarting" if event["restarting"] else "crashed"
        self.crashes += 1
        self.last_crash = cause
        self.crash_round = event.get("round")
        self.step = self.steps_total = 0
        self.loss = self.steps_per_second = None
        if self.vram_source is not None:  # its GPU memory went with the process
            self.vram_bytes, self.device_fraction = 0, None

    def record_memory(self, t: float | None, shown: int) -> None:
        """One memory sample (VRAM where known, else RSS) for the sparkline and the chart."""
        self.memory_history = (self.memory_history + [shown])[-MEMORY_HISTORY:]
        if t is None:
            return
        self.memory_over_time.append((t, shown))
        if len(self.memory_over_time) >= 2 * MEMORY_OVER_TIME_POINTS:
            self.memory_over_time = merged_pairs(self.memory_over_time)

    def record_vram(self, used: int, source: str) -> None:
        self.vram_bytes, self.vram_source = used, source
        self.vram_peak_round = max(self.vram_peak_round or 0, used)
        self.vram_peak = max(self.vram_peak or 0, used)


def merged_pairs(points: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """Every two neighbouring points as one: the later time, the higher value (a peak between
    samples matters more than a dip)."""
    merged = [
        (points[i + 1][0], max(points[i][1], points[i + 1][1]))
        for i in range(0, len(points) - 1, 2)
    ]
    return merged + points[-1:] if len(points) % 2 else merged
