"""The event channel: what reaches the controller from the apps, and what never does."""

import json
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
from multiprocessing.connection import Client

import pytest

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.config_files import to_toml
from engine.core.process_env import EVENTS_ADDRESS_ENV, EVENTS_KEY_ENV
from engine.net.channel import (
    FAILED_AUTHENTICATION,
    HANDSHAKE_TIMED_OUT,
    MAX_FRAME_BYTES,
    NO_HELLO,
    NOT_AN_EVENT,
    NOT_JSON,
    OVERSIZED_FRAME,
    EventHub,
    EventPublisher,
)
from engine.record.recorder import EventRecorder
from engine.record.run_folders import EVENTS_FILE
from engine.system.processes import ProcessTable
from tests.channel_checks import assert_key_not_in
from tests.waiting import wait_for

NOTICE = ev.make(ev.NOTICE, message="a legitimate event")


@pytest.fixture
def thread_failures(monkeypatch):
    """Exceptions that ended a thread during the test (the hub's must never end that way)."""
    failures = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    return failures


@pytest.fixture
def make_hub(thread_failures):
    """EventHubs that record what they hand on in `received`; closed after the test."""
    hubs = []

    def make(**limits):
        received = []
        hub = EventHub(received.append, **limits)
        hub.received = received
        host, _, port = hub.environment()[EVENTS_ADDRESS_ENV].rpartition(":")
        hub.address = (host, int(port))
        hub.key = bytes.fromhex(hub.environment()[EVENTS_KEY_ENV])
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()
    assert thread_failures == []


@pytest.fixture
def hub(make_hub):
    return make_hub()


@pytest.fixture
def in_app_environment(hub, monkeypatch):
    """This process sees the channel as a launched app does."""
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)


def authenticated_peer(hub, hello=None):
    """A raw connection that knows the key and has said hello: what a buggy app could send."""
    peer = Client(hub.address, family="AF_INET", authkey=hub.key)
    peer.send_bytes(json.dumps({"hello": hello or {"role": "client", "pid": 1}}).encode())
    return peer


def assert_closed_by_the_hub(peer):
    assert peer.poll(10)
    with pytest.raises((EOFError, ConnectionResetError)):  # reset: it left frames unread
        peer.recv_bytes()


def warnings(hub):
    return [e["message"] for e in hub.received if e["type"] == ev.WARNING]


def legitimate_events(hub):
    return [e for e in hub.received if e["type"] != ev.WARNING]


def a_publisher_still_gets_through(hub):
    """A real publisher connects now and its event reaches the controller."""
    publisher = EventPublisher.from_env(role="client", client=0)
    assert publisher is not None
    publisher.publish(ev.NOTICE, message="still served")
    wait_for(lambda: any(e.get("message") == "still served" for e in hub.received))
    publisher.close()
    return True


def test_events_from_another_process_reach_the_controller(hub):
    script = (
        "from engine.net.channel import EventPublisher\n"
        "p = EventPublisher.from_env(role='client', client=3)\n"
        "p.publish('client_progress', round=1, client=3, step=2, steps_total=9, loss=1.5)\n"
        "p.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **hub.environment()},
        check=True,
        timeout=60,
    )
    wait_for(lambda: hub.received)
    assert hub.received == [
        ev.make(ev.CLIENT_PROGRESS, round=1, client=3, step=2, steps_total=9, loss=1.5)
    ]


def test_a_peer_with_a_wrong_key_is_refused(hub, in_app_environment, monkeypatch):
    monkeypatch.setenv(EVENTS_KEY_ENV, "00" * 32)
    assert EventPublisher.from_env(role="client", client=0) is None
    wait_for(lambda: hub.rejections == {FAILED_AUTHENTICATION: 1})
    assert warnings(hub) == ["event channel: refused a connection without the right key"]
    monkeypatch.setenv(EVENTS_KEY_ENV, hub.key.hex())
    assert a_publisher_still_gets_through(hub)
    assert [e["message"] for e in legitimate_events(hub)] == ["still served"]


def test_a_peer_without_a_key_is_refused_and_its_events_never_arrive(hub, in_app_environment):
    keyless = Client(hub.address, family="AF_INET")  # answers no challenge
    keyless.send_bytes(json.dumps({"hello": {"role": "server", "pid": 1}}).encode())
    keyless.send_bytes(json.dumps(NOTICE).encode())
    wait_for(lambda: hub.rejections == {FAILED_AUTHENTICATION: 1})
    assert a_publisher_still_gets_through(hub)
    assert [e["message"] for e in legitimate_events(hub)] == ["still served"]
    keyless.close()


def test_a_silent_peer_does_not_keep_others_from_connecting(hub, in_app_environment):
    silent = socket.create_connection(hub.address)
    assert a_publisher_still_gets_through(hub)
    silent.close()


def test_a_peer_that_does_not_authenticate_in_time_is_dropped(make_hub):
    hub = make_hub(handshake_timeout_s=0.2)
    silent = socket.create_connection(hub.address)
    wait_for(lambda: hub.rejections == {HANDSHAKE_TIMED_OUT: 1})
    silent.settimeout(10)
    while silent.recv(4096):  # the challenge, then the end of the connection
        pass
    assert warnings(hub) == ["event channel: a connection did not authenticate in time"]


@pytest.mark.parametrize(
    "first_frame", [json.dumps(NOTICE).encode(), b"\x00garbage", b'{"hello": "client"}']
)
def test_a_connection_whose_first_frame_is_no_hello_is_refused(
    hub, in_app_environment, first_frame
):
    peer = Client(hub.address, family="AF_INET", authkey=hub.key)
    peer.send_bytes(first_frame)
    peer.send_bytes(json.dumps(NOTICE).encode())
    assert_closed_by_the_hub(peer)
    assert hub.rejections == {NO_HELLO: 1}
    assert legitimate_events(hub) == []
    assert a_publisher_still_gets_through(hub)


@pytest.mark.parametrize(
    ("frame", "reason", "named"),
    [
        (b"\xff\xfe\x00 garbage", NOT_JSON, "not JSON"),
        (b"{not json", NOT_JSON, "not JSON"),
        (b"", NOT_JSON, "not JSON"),
        (b"[" * 100_000, NOT_JSON, "not JSON"),  # nested deeper than the parser recurses
        (b'"a string"', NOT_AN_EVENT, "a JSON str, not an object"),
        (b"[1, 2]", NOT_AN_EVENT, "a JSON list, not an object"),
        (b'{"no": "type"}', NOT_AN_EVENT, "unknown event type None"),
        (b'{"type": ["unhashable"]}', NOT_AN_EVENT, "not an event"),
        (b'{"type": "round_done", "round": 1}', NOT_AN_EVENT, "lacks eval_loss"),
    ],
)
def test_a_frame_that_is_not_an_event_is_dropped_and_the_connection_goes_on(
    hub, frame, reason, named
):
    peer = authenticated_peer(hub, {"role": "client", "pid": 4242, "client": 0})
    peer.send_bytes(frame)
    peer.send_bytes(json.dumps(NOTICE).encode())
    wait_for(lambda: legitimate_events(hub))
    assert legitimate_events(hub) == [NOTICE]
    assert hub.rejections == {reason: 1} and hub.rejected == 1
    (warning,) = warnings(hub)
    assert "dropped a frame from client pid 4242" in warning and named in warning
    peer.close()


@pytest.mark.parametrize(
    "header",
    [
        struct.pack("!i", MAX_FRAME_BYTES + 1),
        struct.pack("!i", -1) + struct.pack("!Q", 1 << 40),  # the 64-bit length form: 1 TiB
    ],
    ids=["just-over", "a-terabyte"],
)
def test_a_frame_over_the_limit_closes_its_connection_unread(hub, in_app_environment, header):
    peer = authenticated_peer(hub)
    os.write(peer.fileno(), header)  # announces the frame; none of it follows
    assert_closed_by_the_hub(peer)
    assert hub.rejections == {OVERSIZED_FRAME: 1}
    assert warnings(hub) == [
        "event channel: closed the connection of client pid 1: it sent a frame over the 4 MiB limit"
    ]
    assert a_publisher_still_gets_through(hub)


def test_an_event_of_exactly_the_limit_arrives(hub):
    padding = MAX_FRAME_BYTES - len(json.dumps({"type": "notice", "message": ""}))
    largest = {"type": "notice", "message": "x" * padding}
    assert len(json.dumps(largest).encode()) == MAX_FRAME_BYTES
    peer = authenticated_peer(hub)
    peer.send_bytes(json.dumps(largest).encode())
    wait_for(lambda: hub.received)
    assert hub.received == [largest] and hub.rejected == 0
    peer.close()


def test_a_publisher_keeps_an_event_over_the_limit_to_itself(hub, in_app_environment, caplog):
    publisher = EventPublisher.from_env(role="client", client=0)
    with caplog.at_level(logging.WARNING, logger="engine.net.channel"):
        publisher.publish(ev.NOTICE, message="x" * MAX_FRAME_BYTES)
    assert "not published" in caplog.text
    publisher.publish(ev.NOTICE, message="after it")
    wait_for(lambda: hub.received)
    assert [e["message"] for e in hub.received] == ["after it"] and hub.rejected == 0
    publisher.close()


def test_a_flood_of_garbage_is_one_warning_then_one_summary(make_hub):
    hub = make_hub(report_interval_s=60)
    peer = authenticated_peer(hub, {"role": "client", "pid": 7})
    for _ in range(500):
        peer.send_bytes(b"garbage")
    peer.send_bytes(json.dumps(NOTICE).encode())
    wait_for(lambda: legitimate_events(hub))
    assert hub.rejected == 500
    assert warnings(hub) == ["event channel: dropped a frame from client pid 7 that is not JSON"]
    hub.close()  # reports what the interval held back
    assert warnings(hub)[1:] == [
        "event channel: rejected 499 more since the last report (499 not JSON); "
        "at most one report every 60 s"
    ]


def test_refusals_held_back_are_reported_when_the_interval_ends(make_hub):
    hub = make_hub(report_interval_s=0.2)
    peer = authenticated_peer(hub)
    for _ in range(50):
        peer.send_bytes(b"garbage")

    def reported():
        counts = [1 if "more since" not in w else int(w.split()[3]) for w in warnings(hub)]
        return sum(counts) == 50

    wait_for(reported)  # without a close or another refusal to push it out
    assert len(warnings(hub)) < 50


def test_a_sender_cannot_set_the_schema_version_or_the_time_of_its_events(hub):
    peer = authenticated_peer(hub)
    peer.send_bytes(json.dumps({**NOTICE, "v": 99, "t": 0.0}).encode())
    wait_for(lambda: hub.received)
    assert hub.received == [NOTICE]
    peer.close()


def test_commands_sent_before_the_server_connects_are_delivered_on_connect(hub, in_app_environment):
    hub.send_to_server({"command": "stop"})
    server = EventPublisher.from_env(role="server")
    wait_for(lambda: server._connection.poll())
    assert server.commands() == [{"command": "stop"}]
    hub.send_to_server({"command": "stop"})
    wait_for(lambda: server._connection.poll())
    assert server.commands() == [{"command": "stop"}]
    server.close()


def test_without_a_channel_in_the_environment_nothing_is_published(monkeypatch):
    monkeypatch.delenv(EVENTS_ADDRESS_ENV, raising=False)
    assert EventPublisher.from_env(role="client", client=0) is None


def test_a_closed_hub_ends_its_connections_and_publishers_go_on_quietly(hub, in_app_environment):
    publisher = EventPublisher.from_env(role="client", client=0)
    hub.close()

    def publish_until_the_loss_is_noticed():
        publisher.publish(ev.CLIENT_PROGRESS, round=1, client=0, step=1, steps_total=50)
        return publisher._connection is None

    wait_for(publish_until_the_loss_is_noticed)
    publisher.close()


# An app as the deployment starts one: the channel in its environment, its output in its log.
APP = """
import logging, os, sys
from engine.net.channel import EventPublisher
logging.basicConfig(level=logging.DEBUG)
publisher = EventPublisher.from_env(role="server")
publisher.publish("notice", message="app running")
publisher._send({"type": "no such event"})
for name, value in sorted(os.environ.items()):
    if name.startswith("FEDTUI_") and name != "FEDTUI_EVENTS_KEY":
        print(name, value)
os.environ["FEDTUI_EVENTS_KEY"] = "00" * 32
EventPublisher.from_env(role="client", client=0)  # refused: logs why
os.environ["FEDTUI_EVENTS_KEY"] = "not hex"
EventPublisher.from_env(role="client", client=0)
publisher.close()
"""


def test_the_channel_key_is_never_written_into_the_run_folder(
    tmp_path, monkeypatch, thread_failures
):
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    record = EventRecorder(run_dir / EVENTS_FILE)
    record.open()
    hub = EventHub(record.write)
    key = hub.environment()[EVENTS_KEY_ENV]
    for name, value in hub.environment().items():  # as every process the run starts sees it
        monkeypatch.setenv(name, value)
    config = RunConfig()
    (run_dir / "config.toml").write_text(to_toml(config))
    record.write(ev.make(ev.RUN_STARTED, run_id="run", config=config.to_dict()))
    table = ProcessTable(
        lambda p: record.write(ev.make(ev.PROCESS_STARTED, role=p.role, pid=p.pid)),
        lambda p: record.write(
            ev.make(ev.PROCESS_EXITED, role=p.role, pid=p.pid, returncode=p.returncode)
        ),
    )
    app = table.spawn(
        "serverapp",
        [sys.executable, "-c", APP],
        env=dict(os.environ),
        log_path=run_dir / "logs" / "serverapp.log",
    )
    assert app.popen.wait(60) == 0
    table.scan()
    hub.close()
    record.close()

    events = ev.read_events(run_dir / EVENTS_FILE)
    assert "app running" in [e.get("message") for e in events]
    assert ev.PROCESS_EXITED in [e["type"] for e in events]
    assert any("event channel" in e.get("message", "") for e in events)  # the dropped frame
    assert "FEDTUI_EVENTS_ADDRESS" in (run_dir / "logs" / "serverapp.log").read_text()
    assert_key_not_in(run_dir, key)
    assert thread_failures == []


def test_the_key_check_finds_a_key_written_anywhere(tmp_path):
    key = "ab" * 32
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "superlink.log").write_text(f"env: FEDTUI_EVENTS_KEY={key.upper()}\n")
    with pytest.raises(AssertionError, match="superlink.log"):
        assert_key_not_in(tmp_path, key)
