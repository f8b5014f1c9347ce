"""Per-client memory: NVML's per-process figures and host RSS, attributed to clients by PID.

A client is its SuperNode and everything under it (SuperExec, one ClientApp relay per message)
plus its warm worker, the one process that holds its model and CUDA context for the whole run;
the controller's process table knows which PID belongs to which client at every moment,
including relays that exist for a single round. GPU processes that belong to no client
(another user's job) count on their device's total only.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psutil

from engine.core import events as ev
from engine.system.gpu import GpuSampler, to_event_fields


class ClientMemorySampler:
    def __init__(self, gpu: GpuSampler, num_clients: int) -> None:
        self.gpu = gpu
        self.num_clients = num_clients
        self._warned: set[int] = set()

    def sample(self, owners: dict[int, int]) -> list[ev.Event]:
        """A `gpu_sample` event, preceded by a `warning` for each client that just passed 90%
        of its device. `owners` maps each live PID of the run to its client."""
        devices, gpu_processes = self.gpu.sample()
        totals = {d.index: d.memory_total for d in devices if d.memory_total}
        clients: dict[str, dict[str, Any]] = {}
        warnings = []
        for client in range(self.num_clients):
            pids = [pid for pid, owner in owners.items() if owner == client]
            on_gpu = [g for g in gpu_processes if g.pid in pids and g.used_bytes is not None]
            vram = sum(g.used_bytes or 0 for g in on_gpu) if on_gpu else None
            device = on_gpu[0].device if on_gpu else None
            clients[str(client)] = {
                "rss_bytes": host_rss(pids),
                "vram_bytes": vram,
                "device": device,
                "source": "nvml" if on_gpu else None,
                "gpu_pids": sorted(g.pid for g in on_gpu),  # to check against nvidia-smi
            }
            total = totals.get(device) if device is not None else None
            warning = self._warning(client, vram, total)
            if warning is not None:
                warnings.append(warning)
        return warnings + [
            ev.make(
                ev.GPU_SAMPLE,
                devices=to_event_fields(devices),
                clients=clients,
                unavailable=self.gpu.unavailable,
            )
        ]

    def _warning(self, client: int, used: int | None, total: int | None) -> ev.Event | None:
        if used is None or not total:
            return None
        fraction = used / total
        if fraction < ev.MEMORY_REARM_FRACTION:
            self._warned.discard(client)
        if fraction < ev.MEMORY_WARNING_FRACTION or client in self._warned:
            return None
        self._warned.add(client)
        return ev.make(
            ev.WARNING,
            client=client,
            message=f"client {client} uses {fraction:.0%} of its GPU's memory: "
            f"close to out-of-memory",
        )


def host_rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):  # ended meanwhile, or not ours to read
            total += psutil.Process(pid).memory_info().rss
    return total
