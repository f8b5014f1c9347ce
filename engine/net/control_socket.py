"""The run's control socket: how `fedtui stop`, `fedtui attach` and a detached TUI reach a
controller that lives in another process.

The controller listens on `runs/<id>/control.sock`, a Unix socket only its owner may connect to
(mode 0600; the folder's permissions guard it too). A client sends one JSON object on one line, a
command (engine.core.commands) such as {"command": "stop"}, and reads one line back: {"ok": true} or
{"ok": false, "error": ...}. Anything else (no newline in time, a line over `MAX_REQUEST_BYTES`, not
a JSON object) gets an error reply and changes nothing.

Unix socket paths are limited to 107 bytes and run folders can be deeper than that; both sides
reach the socket through `/proc/self/fd/<folder>`, which keeps the path short (Linux).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from engine.core import commands
from engine.core.errors import FedtuiError

CONTROL_SOCKET = "control.sock"
MAX_REQUEST_BYTES = 64 << 10
REQUEST_TIMEOUT_S = 5.0

Handler = Callable[[dict[str, Any]], dict[str, Any] | None]

log = logging.getLogger(__name__)


class Steerable(Protocol):
    """What a control request may ask of a run: `engine.run.controller.RunController` is one."""

    def request_stop(self, source: str = ...) -> None: ...
    def abort(self) -> None: ...
    def change_config(self, changes: dict[str, Any], source: str = ...) -> dict[str, Any]: ...
    def hold(self, source: str = ...) -> None: ...
    def continue_run(self, source: str = ...) -> None: ...
    def detach(self) -> None: ...


def steer(run: Steerable, request: dict[str, Any]) -> dict[str, Any] | None:
    """Carry out one request; what the reply carries besides `ok` (a change's acknowledgements).
    ValueError for a request that is not a viewer's command."""
    command = commands.check(request)
    name, source = command["command"], command.get("source", "fedtui " + command["command"])
    if name == commands.STOP:
        run.request_stop(source=source)
    elif name == commands.ABORT:
        run.abort()
    elif name == commands.SET:
        return run.change_config(command["changes"], source=source)
    elif name == commands.HOLD:
        run.hold(source=source)
    elif name == commands.CONTINUE:
        run.continue_run(source=source)
    elif name == commands.DETACH:
        run.detach()
    else:
        raise ValueError(f"{name!r} is not a command for a run's controller")
    return None


class NotRunning(FedtuiError):
    """No controller answers on the run's control socket."""


class ControlServer:
    """Serves `handle(request)` on the run folder's control socket; `handle` raises ValueError
    (or FedtuiError) for a request it refuses, and the client reads why."""

    def __init__(self, run_dir: Path, handle: Handler) -> None:
        self.path = run_dir / CONTROL_SOCKET
        self._handle = handle
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.path.unlink(missing_ok=True)  # a killed controller's socket file
        # Bound in a folder only its owner may enter, made the owner's alone, then moved into
        # place: the process's umask (shared by every thread) stays as it is.
        private = Path(tempfile.mkdtemp(prefix=".control-", dir=run_dir))
        try:
            with _short_path(private) as short:
                self._listener.bind(short)
            os.chmod(private / CONTROL_SOCKET, 0o600)
            os.replace(private / CONTROL_SOCKET, self.path)
        finally:
            shutil.rmtree(private, ignore_errors=True)
        self._listener.listen()
        self._closed = False
        threading.Thread(target=self._accept_loop, name="control", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.path.unlink(missing_ok=True)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(REQUEST_TIMEOUT_S)
            try:
                request = _read_request(connection)
                reply: dict[str, Any] = {"ok": True, **(self._handle(request) or {})}
            except (ValueError, FedtuiError) as err:
                reply = {"ok": False, "error": str(err)}
            except OSError:
                return  # the client went away
            except Exception as err:  # a broken command must not take the socket down
                log.exception("control request failed")
                reply = {"ok": False, "error": f"controller failed: {err!r}"}
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps(reply).encode() + b"\n")


def send(run_dir: Path, request: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send `request` to the controller of `run_dir`; its reply. NotRunning when none listens,
    FedtuiError with the controller's reason when it refuses."""
    if not (run_dir / CONTROL_SOCKET).exists():
        raise NotRunning(f"run {run_dir.name} is not running (no controller to ask)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        try:
            with _short_path(run_dir) as short:
                connection.connect(short)
        except (ConnectionRefusedError, FileNotFoundError):
            raise NotRunning(
                f"run {run_dir.name} is not running (its controller is gone)"
            ) from None
        connection.sendall(json.dumps(request).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = connection.recv(4096)
            if not chunk:
                raise NotRunning(f"run {run_dir.name}: its controller ended before answering")
            answer += chunk
    reply = json.loads(answer)
    if not reply.get("ok"):
        raise FedtuiError(f"run {run_dir.name}: {reply.get('error')}")
    return reply


def _read_request(connection: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\n" not in data:
        try:
            chunk = connection.recv(4096)
        except TimeoutError:
            raise ValueError("no request line in time") from None
        if not chunk:
            raise ValueError("no request line")
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError(f"a request over {MAX_REQUEST_BYTES} bytes")
    try:
        request = json.loads(data.partition(b"\n")[0])
    except (ValueError, RecursionError):
        raise ValueError("a request that is not JSON") from None
    return commands.check(request)


@contextlib.contextmanager
def _short_path(run_dir: Path) -> Iterator[str]:
    descriptor = os.open(run_dir, os.O_PATH)
    try:
        yield f"/proc/self/fd/{descriptor}/{CONTROL_SOCKET}"
    finally:
        os.close(descriptor)
