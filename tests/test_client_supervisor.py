"""The controller's side of client faults (engine.run.client_supervisor), on real processes that
stand in for a client's SuperNode and worker."""

import os
import signal
import sys
from types import SimpleNamespace

import pytest

from engine.core import events as ev
from engine.run.client_supervisor import MAX_CLIENT_RESTARTS, ClientSupervisor
from engine.system.processes import ProcessTable
from tests.waiting import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


class StandInDeployment:
    """FlowerDeployment's client half: each client's SuperNode and worker, here long sleeps."""

    def __init__(self, processes, tmp_path, clients=2, warm_workers=True):
        self.config = SimpleNamespace(warm_workers=warm_workers)
        self._processes = processes
        self._logs = tmp_path
        self.supernodes, self.workers = {}, {}
        self.nodes = {}  # client -> the node ID its current SuperNode registered as
        for client in range(clients):
            if warm_workers:
                self.start_worker(client)
            self.start_supernode(client)

    def start_supernode(self, client):
        process = self._spawn("supernode", client)
        self.supernodes[client] = process
        self.nodes[client] = 1000 * client + process.pid
        return process

    def start_worker(self, client):
        self.workers[client] = self._spawn("worker", client)
        return self.workers[client]

    def registered_node(self, client):
        return self.nodes.get(client)

    def _spawn(self, role, client):
        return self._processes.spawn(
            role, SLEEPER, env=dict(os.environ), client=client, log_path=self._logs / "log"
        )


@pytest.fixture
def client_world(tmp_path):
    processes = ProcessTable(lambda p: None, lambda p: None)
    deployment = StandInDeployment(processes, tmp_path)
    recorded, told = [], []
    supervisor = ClientSupervisor(
        deployment,
        processes,
        emit=recorded.append,
        tell_server=told.append,
        current_round=lambda: 2,
    )
    yield deployment, supervisor, recorded, told
    processes.terminate_all(grace_s=1.0)


def kill(process):
    os.kill(process.pid, signal.SIGKILL)
    wait_for(lambda: process.popen.poll() is not None)


def of_type(events, kind):
    return [event for event in events if event["type"] == kind]


def test_each_clients_node_is_told_to_the_server_once(client_world):
    deployment, supervisor, _, told = client_world
    supervisor.check()
    supervisor.check()
    assert told == [
        {"command": "client_of_node", "node_id": deployment.nodes[c], "client": c} for c in (0, 1)
    ]


def test_a_dead_supernode_takes_its_worker_with_it_and_the_client_starts_again(client_world):
    deployment, supervisor, recorded, told = client_world
    supervisor.check()
    old_supernode, old_worker = deployment.supernodes[1], deployment.workers[1]
    kill(old_supernode)
    supervisor.check()

    (crash,) = of_type(recorded, ev.CLIENT_CRASHED)
    assert (crash["client"], crash["role"], crash["pid"], crash["round"]) == (
        1,
        "supernode",
        old_supernode.pid,
        2,
    )
    assert crash["returncode"] == -9 and crash["restarting"]
    crashed = [c for c in told if c["command"] == "client_crashed"]
    assert crashed == [
        {
            "command": "client_crashed",
            "client": 1,
            "reason": f"its supernode (pid {old_supernode.pid}) exited with code -9",
            "node_dead": True,
            "coming_back": True,
            "round": 2,
        }
    ]
    assert old_worker.popen.poll() is not None  # it served the dead SuperNode
    assert deployment.supernodes[1].alive and deployment.workers[1].alive
    assert deployment.supernodes[1].pid != old_supernode.pid
    assert [e["role"] for e in of_type(recorded, ev.CLIENT_RESTARTED)] == ["supernode"]
    supervisor.check()  # the new node is told, so the server can tell it from the dead one
    assert told[-1] == {"command": "client_of_node", "node_id": deployment.nodes[1], "client": 1}


def test_a_dead_worker_loses_only_its_round_and_is_started_again(client_world):
    deployment, supervisor, recorded, told = client_world
    supernode = deployment.supernodes[0]
    kill(deployment.workers[0])
    supervisor.check()

    (crash,) = of_type(recorded, ev.CLIENT_CRASHED)
    assert (crash["role"], crash["restarting"]) == ("worker", True)
    (command,) = [c for c in told if c["command"] == "client_crashed"]
    assert (command["node_dead"], command["coming_back"]) == (False, True)
    assert deployment.supernodes[0] is supernode and supernode.alive
    assert deployment.workers[0].alive


def test_restarts_are_bounded_then_a_client_without_a_supernode_is_gone(client_world):
    deployment, supervisor, recorded, told = client_world
    for _ in range(MAX_CLIENT_RESTARTS + 1):
        kill(deployment.supernodes[1])
        supervisor.check()

    crashes = of_type(recorded, ev.CLIENT_CRASHED)
    assert [c["restarting"] for c in crashes] == [True] * MAX_CLIENT_RESTARTS + [False]
    assert [r["attempt"] for r in of_type(recorded, ev.CLIENT_RESTARTED)] == [1, 2, 3]
    assert told[-1]["coming_back"] is False
    assert 1 not in deployment.supernodes and 1 not in deployment.workers
    supervisor.check()  # nothing more happens to a client that is gone
    assert len(of_type(recorded, ev.CLIENT_CRASHED)) == MAX_CLIENT_RESTARTS + 1


def test_past_the_bound_a_client_without_a_worker_goes_on_with_flowers_own_process(client_world):
    deployment, supervisor, recorded, told = client_world
    for _ in range(MAX_CLIENT_RESTARTS + 1):
        kill(deployment.workers[0])
        supervisor.check()

    assert 0 not in deployment.workers and deployment.supernodes[0].alive
    assert told[-1]["coming_back"] is True  # its node still serves it, cold
    (notice,) = of_type(recorded, ev.NOTICE)
    assert "client 0 goes on with Flower's process per message" in notice["message"]
