"""fedtui's CUDA paths on a real GPU: skipped, with the reason, where torch sees none.

    python -m pytest tests/gpu -v      # on a machine with an NVIDIA GPU and a CUDA torch

The figures of the seed's setup on a GPU come from `python -m benchmarks.gpu_check`.
"""

from pathlib import Path

import pytest
import torch

from engine.core import events as ev
from tests.e2e.test_real_runs import finish, of_type, start

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; torch sees none"),
]

GIB = 2**30
SMALL = ["device=cuda", "samples_per_client=32", "eval_samples=32", "generation_prompts=[]"]


def workers(events):
    """Each client's warm worker: the process that holds its model and CUDA context."""
    started = of_type(events, ev.PROCESS_STARTED)
    return {e["client"]: e["pid"] for e in started if e["role"] == "worker"}


def nvml_views(events, client):
    """What NVML showed of `client` in each GPU sample that found it on a GPU."""
    views = [s["clients"].get(str(client)) or {} for s in of_type(events, ev.GPU_SAMPLE)]
    return [view for view in views if view.get("source") == "nvml"]


def test_nvml_attributes_each_clients_worker_and_its_memory(tmp_path):
    controller, _ = start(tmp_path, [*SMALL, "rounds=2"])
    status, events = finish(controller)

    assert status == "completed"
    assert sorted(workers(events)) == [0, 1]
    for client, pid in workers(events).items():
        views = nvml_views(events, client)
        assert views, f"NVML never showed client {client} on a GPU"
        assert any(pid in view["gpu_pids"] for view in views)
        assert all(view["vram_bytes"] > 0 for view in views)
    for done in of_type(events, ev.CLIENT_ROUND_DONE):
        assert done["peak_vram_bytes"] > 0  # torch's own count, from inside the ClientApp


def test_each_client_sees_only_the_gpu_it_is_pinned_to(tmp_path):
    pins = [torch.cuda.device_count() - 1, 0]  # two different GPUs where there are two
    seen = {}

    def read_worker_environment(controller, event):
        if event["type"] == ev.PROCESS_STARTED and event["role"] == "worker":
            environ = Path(f"/proc/{event['pid']}/environ").read_bytes().split(b"\0")
            variables = dict(item.decode().partition("=")[::2] for item in environ if item)
            seen[event["client"]] = variables.get("CUDA_VISIBLE_DEVICES")

    controller, _ = start(
        tmp_path, [*SMALL, "rounds=1", f"client_gpus={pins}"], read_worker_environment
    )
    status, events = finish(controller)

    assert status == "completed"
    assert seen == {0: str(pins[0]), 1: str(pins[1])}
    for client, pin in enumerate(pins):  # NVML's index, in PCI bus order as CUDA's is pinned
        assert {view["device"] for view in nvml_views(events, client)} == {pin}


def test_bf16_autocast_learns_like_fp32_after_two_rounds(tmp_path):
    losses = {}
    for precision in ("fp32", "bf16"):
        controller, _ = start(tmp_path / precision, [*SMALL, "rounds=2", f"precision={precision}"])
        status, events = finish(controller)
        assert status == "completed"
        info = of_type(events, ev.MODEL_INFO)[0]
        assert info["precision"] == precision
        losses[precision] = {e["round"]: e["eval_loss"] for e in of_type(events, ev.ROUND_DONE)}

    assert losses["bf16"][2] < losses["bf16"][0]
    assert losses["bf16"][2] == pytest.approx(losses["fp32"][2], rel=0.02)


def test_a_client_out_of_gpu_memory_is_named_and_the_run_follows_min_clients(tmp_path):
    # Leave the run 4 GiB of GPU 0: enough for its CUDA contexts and the tiny model, while a
    # batch of 1024 sequences of 512 tokens needs 4 GiB for its logits alone.
    free, _ = torch.cuda.mem_get_info(0)
    hog = torch.empty(free - 4 * GIB, dtype=torch.uint8, device="cuda:0")
    try:
        settings = ["client_gpus=[0, 0]", "rounds=1", "seq_len=512", "min_clients=1"]
        settings += ["samples_per_client=1024", "train_batch_size=1024"]
        controller, _ = start(tmp_path, [*SMALL, *settings])
        status, events = finish(controller)
    finally:
        del hog
        torch.cuda.empty_cache()

    assert status == "failed"
    failed = [e for e in of_type(events, ev.ERROR) if e.get("source") == "clientapp"]
    assert sorted(e["client"] for e in failed) == [0, 1]
    name = torch.cuda.get_device_name(0)
    for error in failed:
        assert error["message"].startswith(
            f"client {error['client']} failed in round 1: OutOfGpuMemory: "
            f"out of GPU memory on cuda:0 (GPU 0, {name})"
        )
    (shortfall,) = [e for e in of_type(events, ev.ERROR) if e.get("source") == "serverapp"]
    assert "round 1: 0 client(s) replied, min_clients needs 1" in shortfall["message"]
