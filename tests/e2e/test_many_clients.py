"""Many clients: a seeded sample of them trains each round, in Flower's simulation runtime
(Ray's actors as virtual clients) or with a SuperNode process per client."""

import csv
import io
import os
import time

import pytest

from engine.app.server.sampling import sample_clients
from engine.core import events as ev
from engine.record.run_folders import export, open_run
from engine.run.controller import RunController
from tests.e2e.test_faults import kill_fedtui_at, processes_of
from tests.e2e.test_real_runs import finish, of_type, start
from tests.process_checks import ProcessSettings

pytestmark = pytest.mark.e2e

SMALL = ["samples_per_client=32", "eval_samples=32"]
SIMULATION = ["backend=simulation", "num_clients=20", "clients_per_round=4", "rounds=3", *SMALL]


def trained(events, number):
    """The clients that sent a model in round `number`."""
    done = of_type(events, ev.CLIENT_ROUND_DONE)
    return sorted(e["client"] for e in done if e["round"] == number)


def test_twenty_virtual_clients_four_a_round_in_the_simulation_runtime(tmp_path):
    settings = ProcessSettings()
    controller, _ = start(tmp_path, SIMULATION, settings)
    status, events = finish(controller)

    assert status == "completed"
    sampled = {e["round"]: e["sampled"] for e in of_type(events, ev.ROUND_STARTED)}
    assert sorted(sampled) == [1, 2, 3]
    for number, clients in sampled.items():
        assert len(set(clients)) == 4 and set(clients) <= set(range(20))
        assert trained(events, number) == clients
    evals = {e["round"]: e["eval_loss"] for e in of_type(events, ev.ROUND_DONE)}
    assert evals[3] < evals[0]
    roles = {e["role"] for e in of_type(events, ev.PROCESS_STARTED)}
    assert {"superlink", "serverapp", "ray"} <= roles and "supernode" not in roles
    # Ray's actors train under the SuperLink: all of it at this process's priority, without
    # the fixed malloc threshold (BENCHMARKS.md, "Training speed")
    assert {nice for _, nice, _ in settings.seen} == {os.nice(0)}
    assert settings.of("ray") == {(os.nice(0), False)}
    assert settings.batch == set()
    assert processes_of(os.getpid()) == []  # nothing of Ray's, either


def test_a_simulated_run_stops_after_its_round_and_resumes_with_the_same_draw(tmp_path):
    def stop_during_round_1(controller, event):
        if event["type"] == ev.CLIENT_PROGRESS and event["round"] == 1:
            controller.request_stop()

    settings = ["backend=simulation", "num_clients=6", "clients_per_round=3", "rounds=2", *SMALL]
    controller, _ = start(tmp_path, settings, stop_during_round_1)
    assert finish(controller)[0] == "stopped"

    status, events = finish(RunController.resume(controller.run_dir).start())

    assert status == "completed"
    started = {e["round"]: e for e in of_type(events, ev.ROUND_STARTED)}
    rounds = {e["round"]: e for e in of_type(events, ev.ROUND_DONE)}
    assert started[2]["start_model_sha256"] == rounds[1]["model_sha256"]
    assert started[2]["sampled"] == sample_clients(list(range(6)), 3, seed=0, server_round=2)
    assert processes_of(os.getpid()) == []


def test_nothing_of_the_simulation_runtime_outlives_a_killed_fedtui(tmp_path):
    pid = kill_fedtui_at(tmp_path, "training round 1", SIMULATION)
    deadline = time.monotonic() + 10
    while (survivors := processes_of(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivors == []


def test_supernodes_sample_two_of_four_clients_reproducibly_and_evaluate_on_their_own_data(
    tmp_path,
):
    settings = ["num_clients=4", "clients_per_round=2", "rounds=3", "seed=3", "client_eval=true"]
    controller, _ = start(tmp_path, [*settings, *SMALL])
    status, events = finish(controller)

    assert status == "completed"
    evaluated = {}
    for e in of_type(events, ev.CLIENT_EVAL):
        evaluated.setdefault(e["round"], []).append(e["client"])
        assert e["examples"] == 3 and 0 < e["eval_loss"] < 9  # a tenth of 32 samples
    assert sorted(evaluated[0]) == [0, 1, 2, 3]  # the initial model, on every client
    for number in (1, 2, 3):
        expected = sample_clients(list(range(4)), 2, seed=3, server_round=number)
        (started,) = [e for e in of_type(events, ev.ROUND_STARTED) if e["round"] == number]
        assert started["sampled"] == expected and started["clients"] == 2
        assert trained(events, number) == expected
        assert sorted(evaluated[number]) == expected  # those who trained evaluate
    rows = list(csv.DictReader(io.StringIO(export(open_run(controller.run_dir), "csv"))))
    assert all(rows[0][f"client_{k}_eval_loss"] for k in range(4))
    assert [bool(rows[1][f"client_{k}_eval_loss"]) for k in range(4)] == [
        k in sample_clients(list(range(4)), 2, seed=3, server_round=1) for k in range(4)
    ]
