"""One client of a run as the views show it: its state, progress and memory."""

from __future__ import annotations

from dataclasses import dataclass, field

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
