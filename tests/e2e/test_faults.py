"""Real runs with real faults: a client's process, the SuperLink, the ServerApp or fedtui itself
killed with SIGKILL at a chosen moment. A lost client costs its reply, not the run; a lost
server ends the run as failed; nothing of a run outlives it."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from engine.core import events as ev
from engine.core.process_env import CONTROLLER_PID_ENV
from engine.flower import home as flower_home
from engine.run.controller import RunController
from tests.e2e.test_real_runs import SMALL, alive, finish, of_type, shared_folders, start
from tests.process_checks import processes_with
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def kill_once(killed, controller, role, client=None):
    """SIGKILL the live `role` process (of `client`), the first time only; note PID and time."""
    if killed:
        return
    for process in controller._processes.alive():
        if process.role == role and process.client == client:
            killed.append((process.pid, time.time()))
            os.kill(process.pid, signal.SIGKILL)
            return


def kill_during_round_1(role, client, killed):
    def on_event(controller, event):
        in_round_1 = event["type"] == ev.CLIENT_PROGRESS and event["round"] == 1
        if in_round_1 and (client is None or event["client"] == client):
            kill_once(killed, controller, role, client)

    return on_event


def clients_of_round(events, number):
    return sorted(
        e["client"] for e in of_type(events, ev.CLIENT_ROUND_DONE) if e["round"] == number
    )


def test_a_worker_killed_mid_round_costs_one_reply_and_the_run_completes(tmp_path):
    killed = []
    controller, _ = start(
        tmp_path,
        ["rounds=3", "min_clients=1", *SMALL],
        kill_during_round_1("worker", 1, killed),
    )
    status, events = finish(controller)

    assert killed and status == "completed"
    (pid, killed_at) = killed[0]
    (crash,) = of_type(events, ev.CLIENT_CRASHED)
    assert (crash["client"], crash["role"], crash["pid"], crash["round"]) == (1, "worker", pid, 1)
    assert crash["returncode"] == -9 and crash["restarting"]
    (error,) = [e for e in of_type(events, ev.ERROR) if e.get("client") == 1]
    assert error["round"] == 1 and "client 1 failed in round 1" in error["message"]
    assert error["t"] - killed_at < 10  # no 60 s heartbeat timeout
    assert clients_of_round(events, 1) == [0]  # the round counted the survivor
    assert clients_of_round(events, 2) == clients_of_round(events, 3) == [0, 1]
    (restarted,) = of_type(events, ev.CLIENT_RESTARTED)
    assert (restarted["client"], restarted["role"], restarted["attempt"]) == (1, "worker", 1)
    assert [e["round"] for e in of_type(events, ev.ROUND_DONE)] == [0, 1, 2, 3]


def test_a_killed_supernode_is_started_again_and_the_next_round_has_both_clients(tmp_path):
    killed = []
    controller, _ = start(
        tmp_path,
        ["rounds=2", "min_clients=1", *SMALL],
        kill_during_round_1("supernode", 1, killed),
    )
    status, events = finish(controller)

    assert killed and status == "completed"
    (crash,) = of_type(events, ev.CLIENT_CRASHED)
    assert (crash["role"], crash["client"], crash["restarting"]) == ("supernode", 1, True)
    restarted = {e["role"] for e in of_type(events, ev.CLIENT_RESTARTED) if e["client"] == 1}
    assert restarted == {"supernode"}
    errors = [e for e in of_type(events, ev.ERROR) if e.get("client") == 1]
    assert errors and "its supernode" in errors[0]["message"]
    assert errors[0]["t"] - killed[0][1] < 10
    assert clients_of_round(events, 1) == [0]
    assert clients_of_round(events, 2) == [0, 1]
    supernodes_1 = [
        e
        for e in of_type(events, ev.PROCESS_STARTED)
        if e["role"] == "supernode" and e["client"] == 1
    ]
    assert len(supernodes_1) == 2


def test_with_every_client_required_a_lost_client_fails_the_run_naming_it(tmp_path):
    killed = []
    controller, _ = start(
        tmp_path, ["rounds=2", *SMALL], kill_during_round_1("supernode", 1, killed)
    )
    status, events = finish(controller)

    assert status == "failed"
    (shortfall,) = [e for e in of_type(events, ev.ERROR) if e.get("source") == "serverapp"]
    assert "round 1: 1 client(s) replied, min_clients needs 2" in shortfall["message"]
    assert "client 1: its supernode" in shortfall["message"]
    assert [e["round"] for e in of_type(events, ev.ROUND_DONE)] == [0]


@pytest.mark.parametrize("role", ["superlink", "serverapp"])
def test_a_dead_server_process_fails_the_run_and_ends_everything_within_10_s(tmp_path, role):
    killed = []
    controller, _ = start(tmp_path, ["rounds=2", *SMALL], kill_during_round_1(role, None, killed))
    assert controller.wait(900) == "failed"
    finished_at = time.time()  # the run's end is written once every process is gone
    assert [pid for pid in controller.pids() if alive(pid)] == []
    assert finished_at - killed[0][1] < 10
    assert shared_folders(controller.run_dir) == []  # a killed ServerApp's are the controller's
    _, events = finish(controller)
    (error,) = [e for e in of_type(events, ev.ERROR) if e.get("source") == "controller"]
    assert ("flower-superlink" if role == "superlink" else "ServerApp") in error["message"]


# Moments of a run, as what the record says last: before Flower, while it starts, in and between
# rounds.
MOMENTS = {
    "run started": lambda e: e["type"] == ev.RUN_STARTED,
    "preparing data": lambda e: e["type"] == ev.NOTICE and "preparing data" in e["message"],
    "superlink up": lambda e: e["type"] == ev.PROCESS_STARTED and e["role"] == "superlink",
    "first supernode": lambda e: e["type"] == ev.PROCESS_STARTED and e["role"] == "supernode",
    "submitting": lambda e: e["type"] == ev.NOTICE and "submitting" in e["message"],
    "serverapp started": lambda e: e["type"] == ev.PROCESS_STARTED and e["role"] == "serverapp",
    "after round 0": lambda e: e["type"] == ev.ROUND_DONE and e["round"] == 0,
    "training round 1": lambda e: e["type"] == ev.CLIENT_PROGRESS and e["round"] == 1,
    "aggregating round 1": lambda e: e["type"] == ev.CLIENT_ROUND_DONE and e["round"] == 1,
    "after round 1": lambda e: e["type"] == ev.ROUND_DONE and e["round"] == 1,
}


def processes_of(controller_pid):
    """Every live process started for the run of the fedtui process `controller_pid`."""
    return [
        f"{pid} {' '.join(command)[:120]}"
        for pid, command in processes_with(CONTROLLER_PID_ENV, str(controller_pid))
    ]


def kill_fedtui_at(runs_dir, moment, overrides=("rounds=2", *SMALL)):
    """Run `fedtui run --headless` (2 rounds) until the record shows `moment`, then SIGKILL it;
    its PID."""
    fedtui = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", "--headless", "--runs-dir", str(runs_dir)]
        + [arg for item in overrides for arg in ("--set", item)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def reached():
        for path in runs_dir.glob("*/events.jsonl"):
            if any(MOMENTS[moment](event) for event in ev.read_events(path)):
                return True
        assert fedtui.poll() is None, "the run ended before the moment came"
        return False

    try:
        wait_for(reached, timeout=600, interval=0.05)
    finally:
        fedtui.kill()
        fedtui.wait()
    assert fedtui.returncode == -9
    return fedtui.pid


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_fedtui_killed_at_any_moment_leaves_no_process_of_its_run(tmp_path, moment):
    pid = kill_fedtui_at(tmp_path, moment)
    (run_dir,) = tmp_path.iterdir()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        survivors = processes_of(pid) + shared_folders(run_dir)
        if not survivors:
            break
        time.sleep(0.2)
    assert survivors == []
    flower_home.remove_orphans()  # what the next run does first
    assert list(Path(tempfile.gettempdir()).glob(f"fedtui-*-{pid}-*")) == []


def test_a_run_whose_fedtui_was_killed_resumes_from_its_last_round(tmp_path):
    kill_fedtui_at(tmp_path, "after round 1")
    (run_dir,) = tmp_path.iterdir()

    resumed = RunController.resume(run_dir).start()
    status, events = finish(resumed)

    assert status == "completed"
    assert of_type(events, ev.RUN_RESUMED)[0]["from_round"] == 1
    assert [e["round"] for e in of_type(events, ev.ROUND_DONE)] == [0, 1, 2]
