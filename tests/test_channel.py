import os
import subprocess
import sys
import threading
import time

import pytest

from engine import events as ev
from engine.channel import EventHub, EventPublisher
from engine.process_env import EVENTS_ADDRESS_ENV, EVENTS_KEY_ENV
from tests.waiting import wait_for


@pytest.fixture
def hub():
    received, arrived = [], threading.Event()

    def on_event(event):
        received.append(event)
        arrived.set()

    hub = EventHub(on_event)
    hub.received, hub.arrived = received, arrived
    yield hub
    hub.close()


def test_events_from_another_process_reach_the_controller(hub):
    script = (
        "from engine.channel import EventPublisher\n"
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


def test_a_peer_without_the_key_is_refused(hub, monkeypatch):
    monkeypatch.setenv(EVENTS_ADDRESS_ENV, hub.environment()[EVENTS_ADDRESS_ENV])
    monkeypatch.setenv(EVENTS_KEY_ENV, "00" * 32)
    assert EventPublisher.from_env(role="client", client=0) is None
    time.sleep(0.2)
    assert hub.received == []


def test_commands_sent_before_the_server_connects_are_delivered_on_connect(hub, monkeypatch):
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)
    hub.send_to_server({"command": "stop"})
    server = EventPublisher.from_env(role="server")
    wait_for(lambda: server._connection.poll())
    assert server.commands() == [{"command": "stop"}]
    hub.send_to_server({"command": "stop"})
    wait_for(lambda: server._connection.poll())
    assert server.commands() == [{"command": "stop"}]
    server.close()


def test_malformed_events_are_recorded_as_errors(hub, monkeypatch):
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)
    publisher = EventPublisher.from_env(role="client", client=0)
    publisher._send({"type": "round_done", "round": 1})
    wait_for(lambda: hub.received)
    assert hub.received[0]["type"] == ev.ERROR
    assert "lacks eval_loss" in hub.received[0]["message"]
    publisher.close()


def test_without_a_channel_in_the_environment_nothing_is_published(monkeypatch):
    monkeypatch.delenv(EVENTS_ADDRESS_ENV, raising=False)
    assert EventPublisher.from_env(role="client", client=0) is None


def test_a_lost_controller_does_not_break_the_publisher(hub, monkeypatch):
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)
    publisher = EventPublisher.from_env(role="client", client=0)
    hub.close()
    time.sleep(0.1)
    for step in range(50):  # the peer is gone: sends fail quietly
        publisher.publish(ev.CLIENT_PROGRESS, round=1, client=0, step=step, steps_total=50)
    publisher.close()
