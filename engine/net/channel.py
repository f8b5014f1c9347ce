"""The local, authenticated channel between the controller and the Flower apps it launched.

The controller listens on a loopback port; the address and a random key reach the ServerApp and
ClientApps through the environment Flower's processes inherit. Connections authenticate with
the key (HMAC challenge of `multiprocessing.connection`) and carry JSON, never pickles: apps send
a hello, then events; the controller sends commands (such as "stop after this round") back to
the ServerApp. A process that finds no channel in its environment (a SuperNode on another host)
publishes nothing; what the UI needs from it still reaches the ServerApp inside Flower's replies.

Anything else that reaches the port is refused and counted, never trusted: a peer without the
key, one that does not finish the handshake in time, a frame over `MAX_FRAME_BYTES`, a frame
that is not a JSON event. The run's record says so in one `warning` event, then at most one
summary per `REPORT_INTERVAL_S`, however many arrive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, answer_challenge, deliver_challenge
from typing import Any

from engine.core import commands, events as ev
from engine.core.process_env import EVENTS_ADDRESS_ENV, EVENTS_KEY_ENV
from engine.net.channel_limits import Deadline, RejectionReport, shut_down

log = logging.getLogger(__name__)

# The largest event is a few KiB (an error with a traceback, a gpu_sample of 8 devices); a frame
# that announces more is refused from its length header, before any of it is read.
MAX_FRAME_BYTES = 4 << 20
# To authenticate and say hello; until then a peer holds only its own thread.
HANDSHAKE_TIMEOUT_S = 5.0
REPORT_INTERVAL_S = 10.0
ACCEPT_RETRY_S = 0.1

# Why the hub refused something: the keys of `EventHub.rejections`.
FAILED_AUTHENTICATION = "failed authentication"
HANDSHAKE_TIMED_OUT = "handshake timed out"
NO_HELLO = "no hello"
OVERSIZED_FRAME = "oversized frame"
NOT_JSON = "not JSON"
NOT_AN_EVENT = "not an event"


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

    def commands(self) -> list[commands.Command]:
        """Commands the controller sent since the last call (non-blocking)."""
        received = []
        try:
            while self._connection is not None and self._connection.poll():
                frame = self._connection.recv_bytes(MAX_FRAME_BYTES)
                try:
                    received.append(commands.check(json.loads(frame)))
                except ValueError as err:
                    log.warning("fedtui: a command from the controller was dropped: %s", err)
        except (OSError, EOFError):
            self._connection = None
        return received

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _send(self, message: dict[str, Any]) -> None:
        frame = json.dumps(message).encode()
        if len(frame) > MAX_FRAME_BYTES:  # the hub would close the channel on it
            log.warning(
                "fedtui event %r not published: %d bytes, over the channel's limit of %d",
                message.get("type"),
                len(frame),
                MAX_FRAME_BYTES,
            )
            return
        with self._lock:
            if self._connection is None:
                return
            try:
                self._connection.send_bytes(frame)
            except OSError as err:
                log.warning("fedtui event channel lost (%s); not publishing", err)
                self._connection = None


class EventHub:
    """The controller side: accepts app connections and hands each hello to `on_hello` and each
    event to `on_event` (from the hub's threads). What it refuses is counted in `rejections`
    and reported to `on_event` as `warning` events, rate-limited."""

    def __init__(
        self,
        on_event: Callable[[dict[str, Any]], None],
        on_hello: Callable[[dict[str, Any]], None] = lambda hello: None,
        *,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        report_interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self._on_event = on_event
        self._on_hello = on_hello
        self._handshake_timeout_s = handshake_timeout_s
        self._key = secrets.token_bytes(32)
        # A plain socket rather than a keyed `Listener`: its accept() authenticates the peer
        # inline, so one peer that never answers would keep every other from connecting.
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._peers: set[Connection] = set()
        self._server: Connection | None = None
        self._pending_for_server: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._rejections = RejectionReport(self._warn, report_interval_s)
        threading.Thread(target=self._accept_loop, name="event-hub", daemon=True).start()

    def environment(self) -> dict[str, str]:
        host, port = self._socket.getsockname()[:2]
        return {EVENTS_ADDRESS_ENV: f"{host}:{port}", EVENTS_KEY_ENV: self._key.hex()}

    @property
    def rejected(self) -> int:
        """How many connections and frames the hub has refused."""
        return self._rejections.total

    @property
    def rejections(self) -> dict[str, int]:
        """The refusals by reason (FAILED_AUTHENTICATION, NOT_JSON, ...)."""
        return self._rejections.by_reason()

    def send_to_server(self, command: dict[str, Any]) -> None:
        """Deliver now if the ServerApp is connected, else as soon as it connects."""
        with self._lock:
            if self._server is None:
                self._pending_for_server.append(command)
                return
            self._send(self._server, command)

    def close(self) -> None:
        """Stop listening, end every connection, and report refusals not yet reported."""
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._socket.close()
            for peer in self._peers:
                shut_down(peer)
        self._rejections.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                peer, _ = self._socket.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(ACCEPT_RETRY_S)  # out of file descriptors, say: do not spin
                continue
            connection = Connection(peer.detach())
            threading.Thread(
                target=self._serve, args=(connection,), daemon=True, name="event-hub-peer"
            ).start()

    def _serve(self, connection: Connection) -> None:
        with self._lock:
            if self._closed:
                connection.close()
                return
            self._peers.add(connection)
        try:
            hello = self._handshake(connection)
            if hello is None:
                return
            self._on_hello(hello)
            if hello.get("role") == "server":
                with self._lock:
                    self._server = connection
                    for command in self._pending_for_server:
                        self._send(connection, command)
                    self._pending_for_server.clear()
            self._relay_events(connection, f"{hello.get('role')} pid {hello.get('pid')}")
        finally:
            with self._lock:  # under the lock: close() shuts down only connections still open
                self._peers.discard(connection)
                if self._server is connection:
                    self._server = None
                connection.close()

    def _handshake(self, connection: Connection) -> dict[str, Any] | None:
        """Authenticate the peer, both ways, and read its hello; None when it fails (refused
        and counted) or the peer leaves."""
        deadline = Deadline(connection, self._handshake_timeout_s)
        try:
            try:
                deliver_challenge(connection, self._key)
                answer_challenge(connection, self._key)
            except (OSError, EOFError, AuthenticationError, AssertionError):
                if deadline.passed:
                    self._reject(HANDSHAKE_TIMED_OUT, "a connection did not authenticate in time")
                else:
                    self._reject(
                        FAILED_AUTHENTICATION, "refused a connection without the right key"
                    )
                return None
            frame = self._receive(connection, "an authenticated peer")
            if frame is None:
                if deadline.passed:
                    self._reject(HANDSHAKE_TIMED_OUT, "an authenticated peer sent no hello")
                return None
            hello = _decode(frame).get("hello")
            if not isinstance(hello, dict):
                self._reject(NO_HELLO, "refused a connection whose first frame was no hello")
                return None
            return hello
        finally:
            deadline.cancel()

    def _relay_events(self, connection: Connection, sender: str) -> None:
        while (frame := self._receive(connection, sender)) is not None:
            try:
                message = json.loads(frame)
            except (ValueError, RecursionError):  # bad UTF-8 or JSON; nesting too deep
                self._reject(NOT_JSON, f"dropped a frame from {sender} that is not JSON")
                continue
            try:
                if not isinstance(message, dict):
                    raise ValueError(f"a JSON {type(message).__name__}, not an object")
                ev.check(message)
            except (ValueError, TypeError) as err:
                self._reject(NOT_AN_EVENT, f"dropped a frame from {sender}: not an event ({err})")
                continue
            # the controller stamps every event: a sender's own version or time must not
            # override it (an unknown schema version would make the record unreadable)
            message.pop("v", None)
            message.pop("t", None)
            self._on_event(message)

    def _receive(self, connection: Connection, sender: str) -> bytes | None:
        """The next frame, or None once the peer has gone or announced a frame over the
        limit (the stream cannot be read past an unread frame: the connection ends)."""
        try:
            return connection.recv_bytes(MAX_FRAME_BYTES)
        except EOFError:
            return None
        except OSError:
            if not connection.readable:  # what recv_bytes does to a frame over maxlength
                self._reject(
                    OVERSIZED_FRAME,
                    f"closed the connection of {sender}: it sent a frame over the "
                    f"{MAX_FRAME_BYTES >> 20} MiB limit",
                )
            return None

    def _reject(self, reason: str, what: str) -> None:
        if not self._closed:  # closing ends handshakes under way: not the peers' doing
            self._rejections.add(reason, what)

    def _warn(self, message: str) -> None:
        self._on_event(ev.make(ev.WARNING, message=f"event channel: {message}"))

    @staticmethod
    def _send(connection: Connection, command: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            connection.send_bytes(json.dumps(command).encode())


def _decode(frame: bytes) -> dict[str, Any]:
    """A JSON object, or {} for anything else."""
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
