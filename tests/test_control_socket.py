"""The control socket: requests reach the run, anything else is refused and changes nothing."""

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from engine.core.errors import FedtuiError
from engine.net import control_socket as control
from engine.net.control_socket import ControlServer, NotRunning, send, steer


class RecordingRun:
    def __init__(self):
        self.calls = []

    def request_stop(self, source="user"):
        self.calls.append(("stop", source))

    def abort(self):
        self.calls.append(("abort",))

    def change_config(self, changes, source="user"):
        self.calls.append(("set", changes, source))
        return {"changes": [{"key": key, "round": 3} for key in changes], "unanswered": []}

    def hold(self, source="user"):
        self.calls.append(("hold", source))

    def continue_run(self, source="user"):
        self.calls.append(("continue", source))

    def detach(self):
        self.calls.append(("detach",))


@pytest.fixture
def served(tmp_path):
    run = RecordingRun()
    server = ControlServer(tmp_path, lambda request: steer(run, request))
    yield tmp_path, run
    server.close()


def raw_exchange(run_dir, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(run_dir / control.CONTROL_SOCKET))
        connection.sendall(payload)
        return json.loads(connection.makefile("rb").readline())


def test_each_command_reaches_the_run(served):
    run_dir, run = served
    send(run_dir, {"command": "stop"})
    reply = send(run_dir, {"command": "set", "changes": {"local_epochs": 2}, "source": "cli"})
    send(run_dir, {"command": "hold"})
    send(run_dir, {"command": "continue", "source": "monitor"})
    send(run_dir, {"command": "detach"})
    send(run_dir, {"command": "abort"})
    assert run.calls == [
        ("stop", "fedtui stop"),
        ("set", {"local_epochs": 2}, "cli"),
        ("hold", "fedtui hold"),
        ("continue", "monitor"),
        ("detach",),
        ("abort",),
    ]
    # what a change gets back (the rounds it applies from) comes back in the reply
    assert reply == {"ok": True, "changes": [{"key": "local_epochs", "round": 3}], "unanswered": []}


def test_only_the_owner_may_connect(served):
    run_dir, _ = served
    mode = os.stat(run_dir / control.CONTROL_SOCKET).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "a JSON object"),
        (b'{"command": "reboot"}\n', "unknown command"),
        (b'{"command": "set", "changes": "lr=1"}\n', "changes must be a table"),
        (b'{"command": "set"}\n', "changes is missing"),
        (b'{"command": "hold", "source": 7}\n', "source must be a string"),
        (b'{"command": "stop", "now": true}\n', "unknown field(s) now"),
        (b'{"command": "client_of_node", "node_id": 1, "client": 0}\n', "not a command for"),
        (b'{"command": "stop"' + b" " * control.MAX_REQUEST_BYTES + b"}\n", "over"),
    ],
)
def test_a_bad_request_is_refused_saying_why_and_changes_nothing(served, payload, why):
    run_dir, run = served
    reply = raw_exchange(run_dir, payload)
    assert reply["ok"] is False and why in reply["error"]
    assert run.calls == []
    send(run_dir, {"command": "stop"})  # and the socket still serves
    assert run.calls == [("stop", "fedtui stop")]


def test_a_refusal_reaches_the_sender_as_one_line(served):
    run_dir, _ = served
    with pytest.raises(FedtuiError, match="unknown command 'reboot'"):
        send(run_dir, {"command": "reboot"})


def test_a_run_folder_deeper_than_a_socket_path_allows_is_served(tmp_path):
    deep = tmp_path / ("d" * 100) / ("e" * 100)
    deep.mkdir(parents=True)
    run = RecordingRun()
    server = ControlServer(deep, lambda request: steer(run, request))
    try:
        send(deep, {"command": "abort"})
    finally:
        server.close()
    assert run.calls == [("abort",)]


def test_no_controller_is_not_running(tmp_path):
    with pytest.raises(NotRunning, match="not running"):
        send(tmp_path, {"command": "stop"})
    # the socket file of a controller that was killed: nobody listens on it
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(tmp_path / control.CONTROL_SOCKET))
    with pytest.raises(NotRunning, match="its controller is gone"):
        send(tmp_path, {"command": "stop"})


def test_a_closed_server_removes_its_socket(tmp_path):
    ControlServer(tmp_path, lambda request: None).close()
    assert not (tmp_path / control.CONTROL_SOCKET).exists()


def umask_now():
    """This process's umask, read without setting it (Linux's /proc)."""
    status = Path("/proc/self/status").read_text()
    return int(
        next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8
    )


def test_making_the_socket_leaves_the_process_umask_alone(tmp_path, monkeypatch):
    binding = threading.Event()

    class SlowToBind(socket.socket):
        def bind(self, address):
            binding.set()
            time.sleep(0.5)  # a window in which another thread creates files
            super().bind(address)

    monkeypatch.setattr(control.socket, "socket", SlowToBind)
    seen = set()
    maker = threading.Thread(target=lambda: ControlServer(tmp_path, lambda r: {}).close())
    before = umask_now()
    maker.start()
    assert binding.wait(30)
    while maker.is_alive():
        seen.add(umask_now())
    maker.join()

    assert seen == {before}
