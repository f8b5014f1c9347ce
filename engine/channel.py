"""The local, authenticated channel between the controller and the Flower apps it launched.

The controller listens on a loopback port; the address and a random key reach the ServerApp and
ClientApps through the environment Flower's processes inherit. Connections authenticate with
the key (HMAC challenge of `multiprocessing.connection`) and carry JSON, never pickles: apps send
a hello, then events; the controller sends commands (such as "stop after this round") back to
the ServerApp. A process that finds no channel in its environment (a SuperNode on another host)
publishes nothing; what the UI needs from it still reaches the ServerApp inside Flower's replies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from engine import events as ev
from engine.process_env import EVENTS_ADDRESS_ENV, EVENTS_KEY_ENV

log = logging.getLogger(__name__)


class EventPublisher:
    """The app side: publish events, receive commands. Never raises on a lost channel."""

    def __init__(self, connection: Connection) -> None:
        self._connection: Connection | None = connection
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, role: str, **identity: Any) -> EventPublisher | None:
        """Connect if the environment names a channel; `identity` (client, node_id) goes into
        the hello."""
        address, key = os.environ.get(EVENTS_ADDRESS_ENV), os.environ.get(EVENTS_KEY_ENV)
        if not address or not key:
            return None
        host, _, port = address.rpartition(":")
        try:
            connection = Client((host, int(port)), family="AF_INET", authkey=bytes.fromhex(key))
        except (OSError, ValueError, AuthenticationError) as err:
            log.warning("fedtui event channel unavailable (%s); not publishing", err)
            return None
        publisher = cls(connection)
        publisher._send({"hello": {"role": role, "pid": os.getpid(), **identity}})
        return publisher

    def publish(self, type_: str, **fields: Any) -> None:
        self._send(ev.make(type_, **fields))

    def commands(self) -> list[dict[str, Any]]:
        """Commands the controller sent since the last call (non-blocking)."""
        received = []
        try:
            while self._connection is not None and self._connection.poll():
                received.append(json.loads(self._connection.recv_bytes()))
        except (OSError, EOFError):
            self._connection = None
        return received

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _send(self, message: dict[str, Any]) -> None:
        with self._lock:
            if self._connection is None:
                return
            try:
                self._connection.send_bytes(json.dumps(message).encode())
            except OSError as err:
                log.warning("fedtui event channel lost (%s); not publishing", err)
                self._connection = None


class EventHub:
    """The controller side: accepts app connections and hands each hello to `on_hello` and each
    event to `on_event`."""

    def __init__(
        self,
        on_event: Callable[[dict[str, Any]], None],
        on_hello: Callable[[dict[str, Any]], None] = lambda hello: None,
    ) -> None:
        self._on_event = on_event
        self._on_hello = on_hello
        self._key = secrets.token_bytes(32)
        self._listener = Listener(("127.0.0.1", 0), family="AF_INET", authkey=self._key)
        self._server: Connection | None = None
        self._pending_for_server: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, name="event-hub", daemon=True).start()

    def environment(self) -> dict[str, str]:
        host, port = self._listener.address
        return {EVENTS_ADDRESS_ENV: f"{host}:{port}", EVENTS_KEY_ENV: self._key.hex()}

    def send_to_server(self, command: dict[str, Any]) -> None:
        """Deliver now if the ServerApp is connected, else as soon as it connects."""
        with self._lock:
            if self._server is None:
                self._pending_for_server.append(command)
                return
            self._send(self._server, command)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            if self._server is not None:
                self._server.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                connection = self._listener.accept()
            except (OSError, EOFError, AuthenticationError):
                if self._closed:
                    return
                continue  # a peer that failed authentication: keep listening
            threading.Thread(
                target=self._read_loop, args=(connection,), daemon=True, name="event-hub-peer"
            ).start()

    def _read_loop(self, connection: Connection) -> None:
        try:
            hello = json.loads(connection.recv_bytes()).get("hello") or {}
            self._on_hello(hello)
            if hello.get("role") == "server":
                with self._lock:
                    self._server = connection
                    for command in self._pending_for_server:
                        self._send(connection, command)
                    self._pending_for_server.clear()
            while True:
                message = json.loads(connection.recv_bytes())
                try:
                    ev.check(message)
                except ValueError as err:
                    message = ev.make(
                        ev.ERROR,
                        message=f"malformed event from "
                        f"{hello.get('role')} pid {hello.get('pid')}: {err}",
                    )
                self._on_event(message)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            with self._lock:
                if self._server is connection:
                    self._server = None
            connection.close()

    @staticmethod
    def _send(connection: Connection, command: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            connection.send_bytes(json.dumps(command).encode())
