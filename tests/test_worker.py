"""The relay (Flower's `flwr-clientapp` as fedtui ships it) and the worker's side of their
protocol, without Flower: a fake worker, a fake Flower entry point."""

import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.core import process_env
from engine.flower import relay, worker
from engine.system import guard

ARGV = ["--runtime-api-address", "127.0.0.1:9094", "--token", "t0k", "--insecure"]


@pytest.fixture
def relay_program(tmp_path):
    program = tmp_path / "bin" / "flwr-clientapp"
    program.parent.mkdir()
    program.write_text(relay.script(sys.executable, str(Path(relay.__file__).parents[2])))
    program.chmod(0o755)
    return program


def run_relay(program, env, argv=ARGV):
    return subprocess.run(
        [str(program), *argv], env={**os.environ, **env}, capture_output=True, timeout=30
    )


class FakeWorker:
    """Listens like a worker; `answer(request, stream)` plays the worker's part."""

    def __init__(self, path, answer):
        self.requests = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._answer = answer
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        connection, _ = self._listener.accept()
        with connection, connection.makefile("rwb") as stream:
            request = next(relay.replies(stream))
            self.requests.append(request)
            self._answer(request, stream)
        self._listener.close()


def test_the_relay_hands_its_arguments_to_the_worker_and_exits_with_its_code(
    tmp_path, relay_program
):
    path = tmp_path / "worker.sock"
    fake = FakeWorker(path, lambda request, stream: relay.send(stream, {"exit_code": 7}))

    completed = run_relay(relay_program, {relay.WORKER_SOCKET_ENV: str(path)})

    assert completed.returncode == 7
    (request,) = fake.requests
    assert request["argv"] == ARGV and request["pid"] > 0


def test_without_a_worker_the_relay_becomes_flowers_own_clientapp(tmp_path, relay_program):
    flower = tmp_path / "flower-clientapp"
    seen = tmp_path / "argv"
    flower.write_text(f'#!/bin/sh\necho "$@" > {seen}\nexit 3\n')
    flower.chmod(0o755)

    completed = run_relay(
        relay_program,
        {
            relay.WORKER_SOCKET_ENV: str(tmp_path / "nobody-listens.sock"),
            relay.FLOWER_CLIENTAPP_ENV: str(flower),
        },
    )

    assert completed.returncode == 3
    assert seen.read_text().split() == ARGV


def test_a_worker_that_dies_before_pulling_the_message_fails_the_relay(tmp_path, relay_program):
    path = tmp_path / "worker.sock"
    FakeWorker(path, lambda request, stream: None)  # closes without a word

    completed = run_relay(relay_program, {relay.WORKER_SOCKET_ENV: str(path)})

    assert completed.returncode == relay.WORKER_DIED_EXIT_CODE
    assert b"died before it pulled the message" in completed.stderr


class Duplex(io.BytesIO):
    """A stream that reads the relay's request and records what the worker writes."""

    def __init__(self, request):
        super().__init__(json.dumps(request).encode() + b"\n")
        self.written = b""

    def write(self, data):
        self.written += data
        return len(data)


def test_the_worker_announces_the_message_then_answers_the_exit_code(monkeypatch):
    calls = []

    def fake_entry(argv, announce):
        calls.append(argv)
        announce({"message_id": "m1", "run_id": 5, "node_id": 9, "proto": ""})
        return 0

    monkeypatch.setattr(worker, "run_flower_entry", fake_entry)
    stream = Duplex({"argv": [*ARGV, "--parent-pid", "123"], "pid": 42})

    worker.handle(stream, client=1)

    assert calls == [ARGV]  # Flower's parent monitor is not started in a long-lived process
    lines = [json.loads(line) for line in stream.written.splitlines()]
    assert lines == [
        {"message": {"message_id": "m1", "run_id": 5, "node_id": 9, "proto": "", "client": 1}},
        {"exit_code": 0},
    ]


def test_parent_pid_is_dropped_in_both_spellings():
    assert worker.without_parent_pid([*ARGV, "--parent-pid=7"]) == ARGV
    assert worker.without_parent_pid(["--parent-pid", "7", *ARGV]) == ARGV


def test_the_relay_and_the_guard_read_the_variables_the_launcher_sets():
    assert relay.WORKER_SOCKET_ENV == process_env.WORKER_SOCKET_ENV
    assert relay.FLOWER_CLIENTAPP_ENV == process_env.FLOWER_CLIENTAPP_ENV
    assert guard.CONTROLLER_PID_ENV == process_env.CONTROLLER_PID_ENV
