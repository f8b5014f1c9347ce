"""The GPU check's own logic, here where there is no GPU: its arguments and configs, and the
figures it reads from fedtui's GPU samples (made by the real sampler over a stand-in NVML) and
nvidia-smi's listing."""

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_figures import SEED_SECONDS, SmiSample, figures, markdown, seed_estimate
from engine.core import events as ev
from engine.system.client_memory import ClientMemorySampler
from engine.system.gpu import GpuSampler
from tests.fake_nvml import FakeNvml

GIB = 2**30


def test_dry_run_checks_every_case_config_and_runs_nothing(capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in plan] == list(gpu_check.CASES)
    assert "lora True, bf16 on cuda, 3 clients x 480 samples x seq_len 512" in plan[1]
    assert "simulation" in plan[2] and "FedProx mu=0.1" in plan[2]


def test_a_bad_argument_is_one_line_and_exit_2(capsys):
    assert gpu_check.main(["--dry-run", "--samples", "0"]) == 2
    assert capsys.readouterr().err == (
        "gpu_check: config key 'samples_per_client' must be >= 1, got 0\n"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_in_one_line_and_succeeds(capsys):
    assert gpu_check.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu_check: torch sees no CUDA device") and out.count("\n") == 1


def recorded_case(nvml_pids_per_sample, smi_samples):
    """A one-round, two-client run's events as fedtui records them: GPU samples from the real
    sampler at t = 100, 101, ... while NVML lists the given {pid: bytes}."""
    nvml = FakeNvml()
    sampler = ClientMemorySampler(GpuSampler(nvml), num_clients=2)
    owners = {11: 0, 12: 0, 21: 1}  # client 0: relay + worker; client 1: worker
    events = [
        {**ev.make(ev.RUN_STARTED, run_id="r", config={}), "t": 90.0},
        {**ev.make(ev.ROUND_STARTED, round=1), "t": 99.0},
    ]
    for second, processes in enumerate(nvml_pids_per_sample):
        nvml.devices[0]["processes"] = processes
        (sample,) = sampler.sample(owners)
        events.append({**sample, "t": 100.0 + second})
    for client, seconds in ((0, 8.0), (1, 10.0)):
        events.append(
            {
                **ev.make(
                    ev.CLIENT_ROUND_DONE, round=1, client=client, train_loss=2.0, examples=96
                ),
                "seconds": seconds,
                "tokens": 40_000,
                "peak_vram_bytes": 5 * GIB,
                "t": 110.0,
            }
        )
    events.append(
        {
            **ev.make(ev.ROUND_DONE, round=1, eval_loss=2.5),
            "seconds": 14.0,
            "eval_seconds": 2.5,
            "bytes_sent": 3_000_000,
            "bytes_received": 3_000_000,
            "t": 113.0,
        }
    )
    events.append({**ev.make(ev.RUN_FINISHED, status="completed"), "t": 114.0})
    return figures("LoRA, bf16", events, smi_samples)


def test_peaks_are_compared_at_the_moment_of_fedtuis_peak_and_pids_checked():
    case = recorded_case(
        [{12: 3 * GIB, 21: 4 * GIB}, {12: 6 * GIB, 21: 5 * GIB, 999: GIB}, {12: 2 * GIB}],
        [
            SmiSample(100.1, {12: 3 * GIB, 21: 4 * GIB}),
            SmiSample(101.2, {12: 6 * GIB + 2**20, 21: 5 * GIB, 999: GIB}),
            SmiSample(104.0, {12: 9 * GIB}),  # too late to be the moment of the peak
        ],
    )
    first, second = case.clients
    assert (first.client, first.nvml_peak_bytes, first.smi_at_peak_bytes) == (
        0,
        6 * GIB,
        6 * GIB + 2**20,
    )
    assert first.torch_reserved_bytes == 5 * GIB and first.pids == [12]
    assert first.pids_seen_by_smi is True
    assert first.tokens_per_s == 40_000 / 8.0
    assert second.nvml_peak_bytes == 5 * GIB and second.pids == [21]
    assert case.bytes_per_round == 6_000_000 and case.startup_seconds == 9.0
    assert case.overhead_seconds() == pytest.approx(14.0 - 10.0 - 2.5)


def test_a_pid_nvidia_smi_never_listed_is_flagged():
    case = recorded_case([{12: GIB, 21: GIB}], [SmiSample(100.0, {12: GIB})])
    assert [c.pids_seen_by_smi for c in case.clients] == [True, False]
    assert "| **no** |" in markdown([case], samples_per_client=96)


def test_the_seed_estimate_scales_training_and_keeps_the_rest_as_measured():
    case = recorded_case([{12: GIB, 21: GIB}], [])
    estimate = seed_estimate(case, samples_per_client=96)
    # slowest client 10 s for 96 samples x 1 epoch -> 1000 x 3; eval 2.5 s; overhead 1.5 s
    per_round = 10.0 * 3000 / 96 + 2.5 + 1.5
    assert estimate == pytest.approx(
        {
            "per_round_s": per_round,
            "whole_s": 9.0 + 10 * per_round,
            "early_stop_s": 9.0 + 5 * per_round,
        }
    )
    table = markdown([case], samples_per_client=96)
    assert f"| the seed report (its own setup) | {SEED_SECONDS / 3600:.2f} |" in table
    assert f"| fedtui, LoRA, bf16: 10 rounds | {(9.0 + 10 * per_round) / 3600:.2f} |" in table


def test_a_case_that_failed_is_a_row_saying_why():
    failed = figures(
        "full fine-tuning, bf16",
        [
            {
                **ev.make(ev.ERROR, message="client 0 failed in round 1: OutOfGpuMemory: ..."),
                "t": 1.0,
            },
            {**ev.make(ev.RUN_FINISHED, status="failed"), "t": 2.0},
        ],
        [],
    )
    row = markdown([failed], samples_per_client=96).splitlines()[2]
    assert row.startswith(
        "| full fine-tuning, bf16 | failed: client 0 failed in round 1: OutOfGpuMemory"
    )


def test_nvidia_smis_listing_is_read_as_bytes_per_pid(monkeypatch):
    listing = "1234, 5120\n5678, [N/A]\n"
    monkeypatch.setattr(
        gpu_check.subprocess,
        "run",
        lambda *a, **k: type("Done", (), {"stdout": listing})(),
    )
    assert gpu_check.compute_apps() == {1234: 5120 * 2**20}
