"""The ServerApp's side of steering (engine.app.server.between_rounds): a change is acknowledged
at once with the round it applies from, and applied when that round begins, never to one in
flight; a hold waits between rounds until the run continues or stops."""

import threading

import pytest

from engine.app.server.between_rounds import ServerSteering, clients_round_config
from engine.app.server.roster import Roster
from engine.core import commands, events as ev
from engine.core.config import RunConfig
from tests.waiting import wait_for


class Channel:
    """The controller's end of the event channel, as the ServerApp's publisher sees it."""

    def __init__(self):
        self.sent, self.lock = [], threading.Lock()

    def send(self, name, **fields):
        with self.lock:
            self.sent.append(commands.make(name, **fields))

    def commands(self):
        with self.lock:
            sent, self.sent = self.sent, []
        return sent


def steering(first_round=1, config=None):
    channel, published = Channel(), []
    publish = lambda type_, **fields: published.append({"type": type_, **fields})  # noqa: E731
    server = ServerSteering(config or RunConfig(), channel, Roster(2), publish, first_round)
    return server, channel, published


def test_a_change_applies_from_the_next_round_that_begins_never_the_one_in_flight():
    server, channel, published = steering()
    assert server.begin_round(1).local_epochs == 1  # round 1 is in flight

    channel.send(commands.SET, changes={"local_epochs": 2}, source="fedtui set")
    server.read()

    assert published == [
        {"type": ev.CONFIG_CHANGED, "round": 2, "key": "local_epochs", "old": 1, "new": 2,
         "source": "fedtui set"},
    ]  # fmt: skip
    assert server.config.local_epochs == 1  # round 1 goes on with what it began with
    assert server.begin_round(2).local_epochs == 2


def test_changes_before_a_round_begins_all_apply_to_it_in_order():
    server, channel, published = steering(first_round=3)
    channel.send(commands.SET, changes={"learning_rate": 5e-4})
    channel.send(commands.SET, changes={"learning_rate": 1e-4, "proximal_mu": 1.0})
    server.read()

    assert [(e["key"], e["old"], e["new"], e["round"]) for e in published] == [
        ("learning_rate", 1e-3, 5e-4, 3),
        ("learning_rate", 5e-4, 1e-4, 3),
        ("proximal_mu", 0.1, 1.0, 3),
    ]
    config = server.begin_round(3)
    assert (config.learning_rate, config.proximal_mu) == (1e-4, 1.0)


def test_rounds_cannot_go_below_the_rounds_that_have_begun():
    server, channel, published = steering()
    server.begin_round(1)
    server.begin_round(2)
    channel.send(commands.SET, changes={"rounds": 1})
    server.read()

    assert published[0]["new"] == 2  # the run ends after round 2, the one in flight
    assert server.begin_round(3).rounds == 2


def test_a_change_the_server_cannot_take_is_a_warning_not_the_runs_end():
    server, channel, published = steering()
    channel.send(commands.SET, changes={"min_clients": 3})  # more than the 2 clients
    server.read()

    assert [e["type"] for e in published] == [ev.WARNING]
    assert "min_clients" in published[0]["message"]
    assert server.begin_round(1) == RunConfig()


def holding_after(round_number):
    """A run asked to hold, holding after `round_number` in a thread of its own."""
    server, channel, published = steering()
    channel.send(commands.HOLD)
    server.read()
    holding = threading.Thread(target=server.hold, kwargs={"after_round": round_number})
    holding.start()
    wait_for(lambda: any(e["type"] == ev.HELD for e in published), timeout=30)
    return server, channel, published, holding


def test_a_hold_waits_between_rounds_until_the_run_continues():
    server, channel, published, holding = holding_after(1)
    channel.send(commands.SET, changes={"local_epochs": 3})  # a change made while held
    wait_for(lambda: len(published) == 2, timeout=30)

    channel.send(commands.CONTINUE)
    holding.join(timeout=30)

    assert not holding.is_alive()
    assert [e["type"] for e in published] == [ev.HELD, ev.CONFIG_CHANGED, ev.CONTINUED]
    assert published[0]["round"] == 1 and published[1]["round"] == 1  # round 1 had not begun
    assert published[2]["round"] == 1 and published[2]["seconds"] > 0


def test_a_stop_ends_a_hold_and_nothing_continues():
    server, channel, published, holding = holding_after(2)
    channel.send(commands.STOP)
    holding.join(timeout=30)

    assert server.stop_requested and [e["type"] for e in published] == [ev.HELD]


def test_continue_before_the_hold_is_reached_cancels_it():
    server, channel, published = steering()
    channel.send(commands.HOLD)
    channel.send(commands.CONTINUE)
    server.read()
    holding = threading.Thread(target=server.hold, kwargs={"after_round": 1}, daemon=True)
    holding.start()
    holding.join(timeout=30)  # a hold would wait for a continue that never comes
    assert not holding.is_alive() and published == []


def test_each_round_sends_the_clients_its_scheduled_learning_rate_and_local_steps():
    config = RunConfig(
        rounds=3, learning_rate=1e-3, min_learning_rate=1e-5, lr_schedule="cosine", local_steps=4
    )

    sent = [clients_round_config(config, server_round) for server_round in (1, 2, 3)]

    assert [s["learning-rate"] for s in sent] == pytest.approx([1e-3, 5.05e-4, 1e-5])
    assert {s["local-steps"] for s in sent} == {4}
