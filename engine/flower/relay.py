"""The `flwr-clientapp` that Flower's SuperExec starts for each message: a relay to the warm worker.

SuperExec starts `flwr-clientapp` by bare name, so the deployment puts a folder holding a tiny
script of that name first on the SuperNode's PATH; the script runs Python without `site` and
imports only this module (standard library only: it starts in tens of milliseconds, where
Flower's own entry point spends ~3 s importing its SuperNode stack). It hands its arguments to
its client's worker (engine.flower.worker) over a Unix socket, waits, and exits with the
worker's exit code.

Protocol, one JSON object per line:
    relay -> worker   {"argv": [...], "pid": N}
    worker -> relay   {"message": {...}}      the message the worker has pulled (see worker.py)
    worker -> relay   {"exit_code": N}        the ClientApp has finished, Flower's way
If the worker is not there, the relay becomes Flower's own `flwr-clientapp` (cold, but nothing
breaks). If the worker dies after pulling the message, nobody would ever reply to it (Flower
notices only when the task's heartbeat expires, 60 s later), so the relay pushes an error reply
naming the client itself (`python -m engine.flower.worker --report-death`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from io import BufferedIOBase
from typing import Any, NoReturn

from engine.system.guard import watch_controller

# Names of the environment variables, kept equal to engine.core.process_env's (which imports more
# than this module may).
WORKER_SOCKET_ENV = "FEDTUI_WORKER_SOCKET"
FLOWER_CLIENTAPP_ENV = "FEDTUI_FLOWER_CLIENTAPP"
CONNECT_TIMEOUT_S = 2.0
WORKER_DIED_EXIT_CODE = 1


def script(python: str, engine_parent: str) -> str:
    """The text of the `flwr-clientapp` executable: this module's `main` under `python -IS`."""
    return (
        f"#!{python} -IS\n"
        f"import sys\n"
        f"sys.path.insert(0, {engine_parent!r})\n"
        f"from engine.flower.relay import main\n"
        f"sys.exit(main(sys.argv[1:]))\n"
    )


def main(argv: list[str]) -> int:
    watch_controller()
    worker = connect(os.environ.get(WORKER_SOCKET_ENV, ""))
    if worker is None:
        run_flower_clientapp(argv)
    with worker, worker.makefile("rwb") as stream:
        send(stream, {"argv": argv, "pid": os.getpid()})
        announced: dict[str, Any] | None = None
        for reply in replies(stream):
            if "message" in reply:
                announced = reply["message"]
            elif "exit_code" in reply:
                return int(reply["exit_code"])
    # The worker is gone mid-task.
    if announced is not None:
        report_death(argv, announced)
    print("flwr-clientapp relay: the worker died before it pulled the message", file=sys.stderr)
    return WORKER_DIED_EXIT_CODE


def connect(path: str) -> socket.socket | None:
    """A connection to the worker, or None when there is none listening."""
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)  # a round takes as long as its training
    return sock


def send(stream: BufferedIOBase, obj: dict[str, Any]) -> None:
    stream.write(json.dumps(obj).encode() + b"\n")
    stream.flush()


def replies(stream: BufferedIOBase) -> Iterator[dict[str, Any]]:
    """Each complete line the other side sends, until it closes (or dies)."""
    for line in stream:
        if line.endswith(b"\n"):
            yield json.loads(line)


def run_flower_clientapp(argv: list[str]) -> NoReturn:
    """Become Flower's own `flwr-clientapp`: the cold path, used when no worker listens."""
    program = os.environ.get(FLOWER_CLIENTAPP_ENV) or "flwr-clientapp"
    os.execv(program, [program, *argv])


def report_death(argv: list[str], announced: dict[str, Any]) -> NoReturn:
    """Push an error reply to the message the dead worker had pulled (needs Flower: a full
    Python, not this relay's `-IS` one)."""
    python = sys.executable
    os.execv(
        python,
        [
            python,
            "-P",
            "-m",
            "engine.flower.worker",
            "--report-death",
            json.dumps(announced),
            *argv,
        ],
    )
