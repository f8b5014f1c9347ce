"""Every server strategy beyond FedProx and FedAvg, end to end on the default model's full
weights, in sweeps of real runs (Flower's simulation runtime: the server is the subject, not the
backend): each trains two rounds, and a stopped run goes on as if it never stopped."""

import json
import math

import pytest

from engine.core import events as ev
from engine.record.run_folders import SWEEP_FILE, read_run
from tests.e2e.test_sweep import SMALL, fedtui

pytestmark = pytest.mark.e2e

# Order statistics, distances and per-reply losses: Krum and Bulyan, tolerating no malicious
# client, need three replies a round.
WHOLE_ROUND = ["fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan", "qfedavg"]
# Momentum, moments, control variates: what a checkpoint must carry.
STATEFUL = ["fedavgm", "fedadam", "fedyogi", "fedadagrad", "scaffold"]
SIMULATED = ["--set", "backend=simulation", *SMALL, "--headless"]


def sweep(tmp_path, folder, strategies, *settings):
    """A sweep over `strategies` into runs-dir `folder`; each member's round_done events."""
    swept = fedtui(
        tmp_path, "sweep", "--grid", "strategy=" + ",".join(strategies), *settings,
        *SIMULATED, "--runs-dir", folder, timeout=1800,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr
    (sweep_dir,) = (tmp_path / folder).iterdir()
    record = json.loads((sweep_dir / SWEEP_FILE).read_text())
    members = [f"strategy={name}" for name in strategies]
    assert [(m["name"], m["status"]) for m in record["members"]] == [
        (member, "completed") for member in members
    ]
    return {
        name: [e for e in read_run(sweep_dir / member).events if e["type"] == ev.ROUND_DONE]
        for name, member in zip(strategies, members)
    }, sweep_dir


def trained(done):
    assert all(math.isfinite(e["eval_loss"]) for e in done)
    return done[-1]["model_sha256"] != done[0]["model_sha256"]


@pytest.mark.timeout(1800)  # a sweep of six runs, on a machine that may be busy
def test_flowers_order_statistic_strategies_train_two_rounds_on_three_clients(tmp_path):
    members, _ = sweep(tmp_path, "runs", WHOLE_ROUND, "--set", "rounds=2", "--set", "num_clients=3")
    for name, done in members.items():
        assert [e["round"] for e in done] == [0, 1, 2], name
        assert trained(done), name
    listed = fedtui(tmp_path, "runs", "runs").stdout
    assert "Bulyan num_malicious_nodes=0" in listed and "FedTrimmedAvg beta=0.2" in listed


@pytest.mark.timeout(1800)  # three sweeps' worth of runs, on a machine that may be busy
def test_every_stateful_strategy_trains_and_a_stopped_one_goes_on_as_if_it_never_stopped(
    tmp_path,
):
    """Each trains two rounds; FedAvgM's momentum and FedAdam's moments travel with the
    checkpoint: its member of the 2-round sweep, resumed to round 4, has the very global model
    (bit for bit) and eval losses after every round that its member of a 4-round sweep has.
    (FedYogi's and FedAdagrad's moments are FedAdam's state, round-tripped exactly in
    tests/test_strategy_oracle.py; SCAFFOLD's variates: tests/e2e/test_steering.py.) Two
    clients, so the order replies arrive in cannot change a sum."""
    half, half_dir = sweep(tmp_path, "half", STATEFUL, "--set", "rounds=2")
    for name, done in half.items():
        assert [e["round"] for e in done] == [0, 1, 2], name
        assert trained(done), name
    # SCAFFOLD's variates are the model's size again, each way, and the record says so
    scaffold_round = half["scaffold"][1]
    assert scaffold_round["variate_bytes_sent"] * 2 == scaffold_round["bytes_sent"] > 0
    assert scaffold_round["variate_bytes_received"] * 2 == scaffold_round["bytes_received"]

    resumed_strategies = ["fedavgm", "fedadam"]
    whole, _ = sweep(tmp_path, "whole", resumed_strategies, "--set", "rounds=4")

    def rounds(done):
        return [(e["round"], e["model_sha256"], e["eval_loss"]) for e in done]

    for name in resumed_strategies:
        member = half_dir / f"strategy={name}"
        resumed = fedtui(
            tmp_path, "run", "--resume", str(member), "--set", "rounds=4", "--headless"
        )
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        done = [e for e in read_run(member).events if e["type"] == ev.ROUND_DONE]
        assert rounds(done) == rounds(whole[name]), name
        assert [e["round"] for e in done] == [0, 1, 2, 3, 4]
