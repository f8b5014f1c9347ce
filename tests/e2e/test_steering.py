"""Steering real runs from the command line, as a person would: hold a run, change it between
rounds, go on; fork it from a round, alone and as a sweep; and a stopped run that goes on is the
run that never stopped."""

import csv
import io
import json
import subprocess
import sys
import time

import pytest

from engine.core import events as ev
from engine.record import run_lock
from engine.record.run_folders import SWEEP_FILE, read_run
from tests.e2e.test_faults import processes_of
from tests.e2e.test_sweep import SMALL
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

FEDTUI = [sys.executable, "-m", "tui.cli"]
HOLD_S = 90  # longer than Flower's heartbeat (30 s) and its patience: a hold must outlast them
STEADY_ROLES = ("superlink", "supernode", "worker", "serverapp")  # one each for the whole run


def fedtui(cwd, *args, timeout=900):
    return subprocess.run(
        [*FEDTUI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def events_of(run_dir):
    return read_run(run_dir).events


def seen(run_dir, type_, **fields):
    """The recorded events of `type_` whose fields are `fields`."""
    return [
        e
        for e in events_of(run_dir)
        if e["type"] == type_ and all(e.get(k) == v for k, v in fields.items())
    ]


def steady_pids(run_dir):
    return {
        (e["role"], e.get("client"), e["pid"])
        for e in events_of(run_dir)
        if e["type"] == ev.PROCESS_STARTED and e["role"] in STEADY_ROLES
    }


def hold_after(run_dir, number):
    """Hold the run while round `number` trains: it holds once that round is done."""
    wait_for(lambda: seen(run_dir, ev.ROUND_STARTED, round=number), timeout=600)
    held = fedtui(run_dir.parent.parent, "hold", str(run_dir))
    assert held.returncode == 0, held.stderr
    wait_for(lambda: seen(run_dir, ev.HELD, round=number), timeout=600)


def test_a_run_held_changed_and_forked_as_a_person_steers_it(tmp_path):
    launched = fedtui(tmp_path, "run", "--headless", "--detach", "--set", "rounds=4", *SMALL)
    assert launched.returncode == 0, launched.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    controller = run_lock.live_controller(run_dir)

    # Held after round 1 for longer than any of Flower's timeouts, nothing trains meanwhile.
    hold_after(run_dir, 1)
    pids_when_held = steady_pids(run_dir)
    assert read_run(run_dir).state.status == "held"
    time.sleep(HOLD_S)  # the length of the hold is what is tested
    assert not seen(run_dir, ev.ROUND_STARTED, round=2) and not seen(run_dir, ev.ERROR)
    assert fedtui(tmp_path, "continue", str(run_dir)).returncode == 0

    # Held again after round 2, changed while held: the change applies from round 3.
    hold_after(run_dir, 2)
    changed = fedtui(tmp_path, "set", str(run_dir), "local_epochs=2", "learning_rate=5e-4")
    assert changed.returncode == 0, changed.stderr
    assert f"run {run_dir.name}: local_epochs 1 -> 2 from round 3" in changed.stdout
    assert f"run {run_dir.name}: learning_rate 0.001 -> 0.0005 from round 3" in changed.stdout
    for refused, why in [
        ("model=x", "model cannot change in a live run"),
        ("learning_rate=-1", "config key 'learning_rate' must be > 0"),
    ]:
        result = fedtui(tmp_path, "set", str(run_dir), refused)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and why in result.stderr
    assert fedtui(tmp_path, "continue", str(run_dir)).returncode == 0
    wait_for(lambda: run_lock.live_controller(run_dir) is None, timeout=900)

    state = read_run(run_dir).state
    assert state.status == "completed" and state.rounds_completed == 4
    assert not seen(run_dir, ev.ERROR) and not seen(run_dir, ev.CLIENT_CRASHED)
    assert steady_pids(run_dir) == pids_when_held  # no process was started again
    held = seen(run_dir, ev.CONTINUED, round=1)[0]["seconds"]
    assert held >= HOLD_S
    changes = seen(run_dir, ev.CONFIG_CHANGED)
    assert [(c["round"], c["key"], c["new"], c["source"]) for c in changes] == [
        (3, "local_epochs", 2, "fedtui set"),
        (3, "learning_rate", 0.0005, "fedtui set"),
    ]
    steps = {(e["round"], e["client"]): e["steps"] for e in seen(run_dir, ev.CLIENT_ROUND_DONE)}
    for client in (0, 1):
        assert steps[(3, client)] == steps[(4, client)] == 2 * steps[(1, client)]
        assert steps[(2, client)] == steps[(1, client)]
    rows = list(csv.DictReader(io.StringIO(fedtui(tmp_path, "export", str(run_dir)).stdout)))
    assert [row["local_epochs"] for row in rows] == ["1", "1", "1", "2", "2"]
    assert [row["learning_rate"] for row in rows] == ["0.001"] * 3 + ["0.0005"] * 2
    assert processes_of(controller) == []

    # A fork from round 2 with another mu: its round 0 is the parent's round-2 model.
    forked = fedtui(
        tmp_path, "run", "--from", f"{run_dir}@2", "--set", "proximal_mu=1.0", "--set",
        "rounds=2", "--headless",
    )  # fmt: skip
    assert forked.returncode == 0, forked.stderr
    (fork_dir,) = [path for path in (tmp_path / "runs").iterdir() if path != run_dir]
    fork = read_run(fork_dir).state
    assert fork.status == "completed" and fork.config["proximal_mu"] == 1.0
    assert fork.forked_from == {"run": run_dir.name, "path": str(run_dir.resolve()), "round": 2}
    assert fork.rounds[0].eval_loss == state.rounds[2].eval_loss  # the same model, evaluated
    assert fork.config["local_epochs"] == 1  # as round 2 ran, before the change
    listed = fedtui(tmp_path, "runs", "runs").stdout.splitlines()
    parent_line = next(i for i, line in enumerate(listed) if line.startswith(run_dir.name))
    assert listed[parent_line + 1].startswith(f"↳ {fork_dir.name}")  # the family, together
    assert f"forked from {run_dir.name} @ round 2" in listed[parent_line + 1]

    # A sweep from the same round: two mu values, without paying for rounds 1-2 again.
    swept = fedtui(
        tmp_path, "sweep", "--from", f"{run_dir}@2", "--grid", "proximal_mu=0.01,1.0",
        "--set", "rounds=2", "--parallel", "2", "--headless", "--runs-dir", "sweeps",
    )  # fmt: skip
    assert swept.returncode == 0, swept.stdout[-2000:] + swept.stderr
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    record = json.loads((sweep_dir / SWEEP_FILE).read_text())
    assert [m["status"] for m in record["members"]] == ["completed", "completed"]
    for member in ("proximal_mu=0.01", "proximal_mu=1.0"):
        member_state = read_run(sweep_dir / member).state
        assert member_state.forked_from["round"] == 2
        assert member_state.rounds[0].eval_loss == state.rounds[2].eval_loss


def test_a_scaffold_run_on_lora_adapters_stopped_at_round_2_goes_on_as_if_it_never_stopped(
    tmp_path,
):
    """SCAFFOLD's variates (c and each client's c_i, over the adapters) travel with the
    checkpoint, and a client holds none between rounds: the resumed run's clients, new
    processes, train with exactly the variates the uninterrupted run's had. On the deployment
    backend, where weights and variates go through shared memory. (The other stateful
    strategies, on full weights: tests/e2e/test_strategies.py.)"""

    def run(*args):
        return fedtui(tmp_path, "run", *args, "--headless")

    small = ["--set", "strategy=scaffold", "--set", "lora.enabled=true", *SMALL]

    def rounds(folder):
        return [
            (e["round"], e["model_sha256"], e["eval_loss"])
            for e in events_of(folder)
            if e["type"] == ev.ROUND_DONE
        ]

    for rounds_, folder in ((4, "whole"), (2, "half")):
        done = run(*small, "--set", f"rounds={rounds_}", "--runs-dir", folder)
        assert done.returncode == 0, done.stderr
    (whole_dir,) = (tmp_path / "whole").iterdir()
    (half_dir,) = (tmp_path / "half").iterdir()
    resumed = run("--resume", str(half_dir), "--set", "rounds=4")
    assert resumed.returncode == 0, resumed.stderr
    # the same global model after every round, bit for bit, and the same eval losses
    assert rounds(half_dir) == rounds(whole_dir)
    assert [r for r, _, _ in rounds(whole_dir)] == [0, 1, 2, 3, 4]
