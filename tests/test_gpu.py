"""The GPU sampler and per-client memory, against a fake NVML behind the real interface."""

import os
import signal
import sys

import pytest

from engine.core import events as ev
from engine.record.run_state import RunState
from engine.system.client_memory import ClientMemorySampler
from engine.system.gpu import GpuSampler
from engine.system.processes import ProcessTable
from tests.fake_nvml import FakeNvml
from tests.waiting import wait_for

GIB = 1 << 30

# A SuperNode stand-in: one short-lived "ClientApp" at a time, replaced when it ends.
SUPERNODE = """
import subprocess, sys
while True:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).wait()
"""


def clientapp_of(table, client):
    table.scan()
    return next((p for p in table.alive() if p.client == client and p.role != "supernode"), None)


def replaced(table, client, app):
    """The client has a ClientApp again, and it is not `app` (one scan: between two, the old one
    may be gone and the new one not started yet)."""
    current = clientapp_of(table, client)
    return current is not None and current.pid != app.pid


def test_pids_are_attributed_to_clients_through_a_changing_process_tree(tmp_path):
    nvml = FakeNvml()
    table = ProcessTable(lambda p: None, lambda p: None)
    for client in (0, 1):
        table.spawn(
            "supernode",
            [sys.executable, "-c", SUPERNODE],
            env=dict(os.environ),
            log_path=tmp_path / f"supernode-{client}.log",
            client=client,
        )
    sampler = ClientMemorySampler(GpuSampler(nvml), num_clients=2)
    try:
        for _round in (1, 2):  # each round the ClientApps are new processes
            apps = [wait_for(lambda c=c: clientapp_of(table, c)) for c in (0, 1)]
            nvml.devices[0]["processes"] = {
                apps[0].pid: 3 * GIB,
                apps[1].pid: 5 * GIB,
                999_999: 7 * GIB,
            }  # and someone else's job
            owners = {p.pid: p.client for p in table.alive() if p.client is not None}
            (sample,) = sampler.sample(owners)
            clients = sample["clients"]
            assert clients["0"]["vram_bytes"] == 3 * GIB and clients["0"]["source"] == "nvml"
            assert clients["1"]["vram_bytes"] == 5 * GIB and clients["1"]["device"] == 0
            assert [clients[c]["gpu_pids"] for c in ("0", "1")] == [[apps[0].pid], [apps[1].pid]]
            assert clients["0"]["rss_bytes"] > 0
            assert sample["devices"][0]["memory_used"] == 15 * GIB
            for app in apps:
                os.kill(app.pid, signal.SIGKILL)
            wait_for(lambda apps=apps: all(replaced(table, c, a) for c, a in enumerate(apps)))
    finally:
        table.terminate_all(grace_s=1)


def test_unknown_pids_belong_to_no_client():
    nvml = FakeNvml()
    nvml.devices[0]["processes"] = {424242: 4 * GIB}
    (sample,) = ClientMemorySampler(GpuSampler(nvml), num_clients=1).sample({os.getpid(): 0})
    assert sample["clients"]["0"]["vram_bytes"] is None
    assert sample["clients"]["0"]["source"] is None
    assert sample["clients"]["0"]["rss_bytes"] > 0  # host memory is still known


def test_a_driver_without_v3_falls_back_to_v2():
    nvml = FakeNvml(without_v3=True)
    nvml.devices[0]["processes"] = {123: GIB}
    devices, processes = GpuSampler(nvml).sample()
    assert [(p.pid, p.used_bytes) for p in processes] == [(123, GIB)]


def test_unsupported_calls_give_none_for_that_figure_only():
    nvml = FakeNvml(not_supported={"utilization", "processes_v3", "processes_v2"})
    nvml.devices[0]["processes"] = {123: GIB}
    (device,), processes = GpuSampler(nvml).sample()
    assert device.utilization is None
    assert device.memory_total == 80 * GIB
    assert [p.pid for p in processes] == [123]  # the unversioned call still answered


def test_per_process_memory_not_available_is_none():
    nvml = FakeNvml()
    nvml.devices[0]["processes"] = {123: None, 456: (1 << 64) - 1}
    _, processes = GpuSampler(nvml).sample()
    assert [p.used_bytes for p in processes] == [None, None]


@pytest.mark.parametrize(
    "error, reason",
    [
        ("NVMLError_DriverNotLoaded", "NVIDIA driver not loaded"),
        ("NVMLError_LibraryNotFound", "NVML library not found (no NVIDIA driver)"),
        ("NVMLError_NoPermission", "no permission to use NVML"),
    ],
)
def test_no_driver_makes_the_sampler_unavailable_and_host_memory_still_flows(error, reason):
    sampler = GpuSampler(FakeNvml(init_error=getattr(FakeNvml, error)))
    assert sampler.unavailable == reason
    assert sampler.sample() == ([], [])
    (sample,) = ClientMemorySampler(sampler, num_clients=1).sample({os.getpid(): 0})
    assert sample["unavailable"] == reason and sample["devices"] == []
    assert sample["clients"]["0"]["rss_bytes"] > 0


def test_a_gpu_lost_mid_run_is_reported_and_the_others_go_on():
    nvml = FakeNvml(devices=(("A", 40 * GIB), ("B", 40 * GIB)))
    sampler = GpuSampler(nvml)
    assert [d.lost for d in sampler.sample()[0]] == [False, False]
    nvml.lost.add(1)
    devices, _ = sampler.sample()
    assert [(d.name, d.lost) for d in devices] == [("A", False), ("lost", True)]
    nvml.lost.clear()  # once lost, it stays lost: a fallen-off GPU does not come back
    assert sampler.sample()[0][1].lost


def test_passing_90_percent_warns_once_until_memory_drops():
    nvml = FakeNvml(devices=(("A", 10 * GIB),))
    sampler = ClientMemorySampler(GpuSampler(nvml), num_clients=1)
    owners = {4321: 0}

    def kinds(used):
        nvml.devices[0]["processes"] = {4321: used}
        return [e["type"] for e in sampler.sample(owners)]

    assert kinds(5 * GIB) == [ev.GPU_SAMPLE]
    assert kinds(int(9.5 * GIB)) == [ev.WARNING, ev.GPU_SAMPLE]
    assert kinds(int(9.6 * GIB)) == [ev.GPU_SAMPLE]
    assert kinds(7 * GIB) == [ev.GPU_SAMPLE]
    assert kinds(int(9.2 * GIB)) == [ev.WARNING, ev.GPU_SAMPLE]


def test_run_state_keeps_now_peaks_share_and_trend_per_client():
    def sample(used, rss=100):
        return ev.make(
            ev.GPU_SAMPLE,
            devices=[
                {
                    "index": 0,
                    "name": "A",
                    "memory_total": 10 * GIB,
                    "memory_used": used,
                    "utilization": 50,
                }
            ],
            clients={
                "0": {"rss_bytes": rss, "vram_bytes": used, "device": 0, "source": "nvml"},
                "1": {"rss_bytes": rss, "vram_bytes": None, "device": None, "source": None},
            },
        )

    state = RunState()
    state.apply(ev.make(ev.ROUND_STARTED, round=1, clients=2))
    for used in (2 * GIB, 6 * GIB, 4 * GIB):
        state.apply(sample(used))
    state.apply(
        ev.make(
            ev.CLIENT_PROGRESS,
            round=1,
            client=1,
            step=1,
            steps_total=9,
            loss=1.0,
            vram_bytes=3 * GIB,
        )
    )  # NVML cannot see client 1: its own count
    client0, client1 = state.clients[0], state.clients[1]
    assert (client0.vram_bytes, client0.vram_peak_round, client0.vram_peak) == (
        4 * GIB,
        6 * GIB,
        6 * GIB,
    )
    assert client0.device_fraction == pytest.approx(0.4)
    assert client0.memory_history == [2 * GIB, 6 * GIB, 4 * GIB]
    assert (client1.vram_bytes, client1.vram_source) == (3 * GIB, "torch")

    state.apply(ev.make(ev.ROUND_STARTED, round=2, clients=2))
    state.apply(sample(1 * GIB))
    assert (client0.vram_peak_round, client0.vram_peak) == (1 * GIB, 6 * GIB)
