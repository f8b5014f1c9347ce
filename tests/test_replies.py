"""The ServerApp's side of client faults: which nodes are alive, and a round that stops waiting
for a client the controller saw crash (engine.app.server.roster, engine.app.server.replies)."""

import pytest
from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict

from engine.app.server import replies as replies_module
from engine.app.server.replies import RoundReplies, wait_for_clients
from engine.app.server.roster import LiveGrid, Roster
from engine.core import commands, events as ev

pytestmark = pytest.mark.usefixtures("serverapp_identity")


class FakeGrid:
    """Flower's Grid as the round loop uses it: nodes online, replies that arrive when told."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        self.replies = {}  # message id -> reply, once the client has sent it
        self.sent = {}  # message id -> node

    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        ids = []
        for number, message in enumerate(messages):
            ids.append(f"m{number}")
            self.sent[f"m{number}"] = message.metadata.dst_node_id
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in message_ids if i in self.replies]

    def reply(self, message_id, client, error=None):
        node = self.sent[message_id]
        content = RecordDict(
            {
                "metrics": MetricRecord(
                    {
                        "partition-id": client,
                        "train-loss": 1.5,
                        "num-examples": 8,
                        "steps": 2,
                        "train-seconds": 0.1,
                        "peak-rss-bytes": 1,
                    }
                )
            }
        )
        request = Message(
            RecordDict({"config": ConfigRecord()}), dst_node_id=node, message_type="train"
        )
        reply = (
            Message(Error(code=1, reason=error), reply_to=request)
            if error
            else Message(content, reply_to=request)
        )
        reply.metadata.__dict__["_src_node_id"] = node
        self.replies[message_id] = reply


def train_messages(nodes):
    return [
        Message(RecordDict({"config": ConfigRecord()}), dst_node_id=node, message_type="train")
        for node in nodes
    ]


def collector(grid, roster, published, on_poll=lambda: None):
    return RoundReplies(
        grid,
        roster,
        publish=lambda type_, **fields: published.append(ev.make(type_, **fields)),
        read_commands=on_poll,
        timeout=30,
    )


def test_a_dead_node_is_hidden_from_the_strategy_and_a_restarted_one_takes_its_place():
    roster = Roster(num_clients=2)
    grid = FakeGrid([101, 102])
    roster.apply({"command": "client_of_node", "node_id": 101, "client": 0})
    roster.apply({"command": "client_of_node", "node_id": 102, "client": 1})
    crash = {"client": 1, "reason": "its supernode (pid 7) exited with code -9", "round": 1}
    roster.apply({"command": "client_crashed", "node_dead": True, "coming_back": True, **crash})
    live = LiveGrid(grid, roster)
    assert live.get_node_ids() == [101]  # the SuperLink still lists 102 for a minute
    grid.nodes.append(103)
    roster.apply({"command": "client_of_node", "node_id": 103, "client": 1})
    assert live.get_node_ids() == [101, 103]
    assert roster.expected == 2


def test_a_client_gone_for_good_is_no_longer_expected():
    roster = Roster(num_clients=3)
    roster.apply({"command": "client_of_node", "node_id": 5, "client": 2})
    roster.apply(
        {
            "command": "client_crashed",
            "client": 2,
            "reason": "its supernode exited",
            "node_dead": True,
            "coming_back": False,
            "round": None,
        }
    )
    assert roster.expected == 2 and roster.gone == {2}
    assert (
        wait_for_clients(FakeGrid([3, 4, 5]), roster, ceiling_s=30, read_commands=lambda: None) == 2
    )


def test_the_round_stops_waiting_for_a_crashed_client_and_counts_the_survivor():
    roster = Roster(num_clients=2)
    grid = FakeGrid([101, 102])
    roster.node_registered(101, 0)
    roster.node_registered(102, 1)
    published = []
    polls = []

    def on_poll():  # client 0 replies; the controller then says client 1's worker died
        polls.append(1)
        if len(polls) == 1:
            grid.reply("m0", client=0)
        elif len(polls) == 2:
            roster.apply(
                {
                    "command": "client_crashed",
                    "client": 1,
                    "reason": "its worker (pid 9) exited with code -9",
                    "node_dead": False,
                    "coming_back": True,
                    "round": 3,
                }
            )

    replies = collector(grid, roster, published, on_poll)
    got = list(replies.collect(3, train_messages([101, 102])))

    assert [r.metadata.src_node_id for r in got] == [101]
    assert replies.replied == [0]
    (error,) = [e for e in published if e["type"] == ev.ERROR]
    assert error["client"] == 1 and error["round"] == 3
    assert error["message"] == "client 1 failed in round 3: its worker (pid 9) exited with code -9"
    assert replies.shortfall(3, required=1) is None
    assert replies.shortfall(3, required=2) == (
        "round 3: 1 client(s) replied, min_clients needs 2 "
        "(client 1: its worker (pid 9) exited with code -9)"
    )


def test_a_worker_crash_of_an_earlier_round_does_not_drop_this_rounds_reply():
    roster = Roster(num_clients=1)
    grid = FakeGrid([101])
    roster.node_registered(101, 0)
    crash = {"client": 0, "reason": "its worker exited", "node_dead": False, "round": 1}
    roster.apply({"command": "client_crashed", "coming_back": True, **crash})
    polls = []

    def on_poll():
        polls.append(1)
        if len(polls) == 3:  # the restarted worker answers round 2, a little later
            grid.reply("m0", client=0)

    replies = collector(grid, roster, [], on_poll)
    assert len(list(replies.collect(2, train_messages([101])))) == 1
    assert replies.replied == [0] and replies.failed == {}


def test_a_reply_that_made_it_before_the_crash_still_counts():
    roster = Roster(num_clients=1)
    grid = FakeGrid([101])
    roster.node_registered(101, 0)

    def on_poll():  # the reply lands, then the node dies before the next pull
        grid.reply("m0", client=0)
        roster.apply(
            {
                "command": "client_crashed",
                "client": 0,
                "reason": "its supernode exited",
                "node_dead": True,
                "coming_back": True,
                "round": 1,
            }
        )

    grid_pull = grid.pull_messages
    pulls = []

    def pull_after_first(ids):  # the first pull finds nothing yet
        pulls.append(ids)
        return [] if len(pulls) == 1 else grid_pull(ids)

    grid.pull_messages = pull_after_first
    replies = collector(grid, roster, [], on_poll)
    assert len(list(replies.collect(1, train_messages([101])))) == 1
    assert replies.replied == [0] and replies.failed == {}


def two_registered_clients():
    """A roster and grid where client 0 is node 101 and client 1 is node 102."""
    roster = Roster(num_clients=2)
    grid = FakeGrid([101, 102])
    roster.node_registered(101, 0)
    roster.node_registered(102, 1)
    return roster, grid


def test_an_error_reply_names_the_client_and_does_not_count():
    roster, grid = two_registered_clients()
    published = []

    def on_poll():
        grid.reply("m0", client=0)
        grid.reply("m1", client=1, error="the worker of client 1 died while handling the message")

    replies = collector(grid, roster, published, on_poll)
    assert len(list(replies.collect(1, train_messages([101, 102])))) == 1
    assert list(replies.failed) == ["client 1"]
    done = [e["client"] for e in published if e["type"] == ev.CLIENT_ROUND_DONE]
    assert done == [0]


def test_a_round_waits_for_a_restarted_client_to_register_again():
    roster = Roster(num_clients=2)
    grid = FakeGrid([101, 102])
    roster.node_registered(101, 0)
    roster.node_registered(102, 1)
    crash = {"client": 1, "reason": "its supernode exited", "node_dead": True, "round": None}
    roster.apply({"command": "client_crashed", "coming_back": True, **crash})
    polls = []

    def on_poll():  # the new SuperNode shows up at the third look
        polls.append(1)
        if len(polls) == 3:
            grid.nodes.append(103)

    assert wait_for_clients(grid, roster, ceiling_s=60, read_commands=on_poll) == 2
    assert len(polls) == 3


def test_waiting_for_min_clients_ends_at_once_when_too_many_are_gone():
    roster = Roster(num_clients=2)
    roster.node_registered(101, 0)
    crash = {"client": 1, "reason": "its supernode exited", "node_dead": True, "round": None}
    roster.apply({"command": "client_crashed", "coming_back": False, **crash})
    live = wait_for_clients(
        FakeGrid([101]), roster, ceiling_s=3600, read_commands=lambda: None, minimum=2
    )
    assert live == 1  # returned without waiting the hour: client 1 is not coming back


def test_a_late_word_about_a_dead_node_does_not_bring_it_back():
    roster = Roster(num_clients=1)
    roster.node_registered(101, 0)
    crash = {"client": 0, "reason": "its supernode exited", "node_dead": True, "round": 1}
    roster.apply({"command": "client_crashed", "coming_back": True, **crash})
    roster.node_registered(102, 0)
    roster.node_registered(101, 0)  # the dead node's ClientApp said hello after the fact
    assert roster.live([101, 102]) == [102]


class Clock:
    """time as the round loop sees it: each sleep moves it on at once."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def progress(client, server_round, step, steps_total=10):
    return ev.make(
        ev.CLIENT_PROGRESS, round=server_round, client=client, step=step, steps_total=steps_total
    )


def test_the_controller_passes_on_when_a_client_begins_and_ends_a_rounds_training():
    assert commands.training_of(progress(1, 4, step=1)) == {
        "command": commands.CLIENT_TRAINING,
        "client": 1,
        "round": 4,
        "done": False,
    }
    assert commands.training_of(progress(1, 4, step=10))["done"] is True
    assert commands.training_of(progress(1, 4, step=1, steps_total=1))["done"] is True
    assert commands.training_of(progress(1, 4, step=5)) is None
    assert commands.training_of(progress("1", 4, step=1)) is None  # a peer's bad event
    assert commands.training_of(ev.make(ev.ROUND_STARTED, round=4)) is None


def test_the_superlink_is_left_alone_while_a_client_trains(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(replies_module, "time", clock)
    roster = Roster(num_clients=1)
    roster.node_registered(101, 0)
    grid = FakeGrid([101])
    pulled_at = []
    pull = grid.pull_messages
    grid.pull_messages = lambda ids: pulled_at.append(clock.now) or pull(ids)
    began = clock.now
    replied_at = []
    words = {  # seconds into the round -> what the controller tells the ServerApp
        0.5: commands.training_of(progress(0, 2, step=1)),
        20.0: commands.training_of(progress(0, 2, step=10)),
    }

    def on_poll():
        for at in [at for at in words if clock.now - began >= at]:
            roster.apply(words.pop(at))
        if clock.now - began >= 20.5 and not grid.replies and not replied_at:
            grid.reply("m0", client=0)
            replied_at.append(clock.now)

    replies = collector(grid, roster, [], on_poll)
    assert len(list(replies.collect(2, train_messages([101])))) == 1

    while_training = [t - began for t in pulled_at if 0.5 < t - began < 20.0]
    assert len(while_training) <= 20 / replies_module.TRAINING_POLL_S  # not every poll: 100
    assert pulled_at[-1] - replied_at[0] < 1.5 * replies_module.REPLY_POLL_S  # once done: at once
