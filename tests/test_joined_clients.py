"""The ServerApp of a served run waits for its clients to join from other hosts: it asks each new
node who it is, says who joined from where and who is missing, and gives up after the join
timeout naming who never came (engine.app.server.joined_clients)."""

from types import SimpleNamespace

import pytest
from flwr.app import ConfigRecord, MetricRecord

from engine.app.server import joined_clients as joining
from engine.app.server.roster import Roster
from engine.core import events as ev


class JoiningGrid:
    """Nodes that come online poll by poll; each answers the partition query as `fedtui join`
    would have it answer."""

    def __init__(self, arrivals, identities):
        self.arrivals = iter(arrivals)  # per poll: nodes that come online
        self.identities = identities  # node -> (client, address)
        self.online = []
        self.asked = []

    def get_node_ids(self):
        self.online += next(self.arrivals, [])
        return list(self.online)

    def create_message(self, content, message_type, node, group_id):
        return SimpleNamespace(node=node, message_type=message_type)

    def send_and_receive(self, messages, timeout):
        self.asked += [(m.message_type, m.node) for m in messages]
        for message in messages:
            client, address = self.identities[message.node]
            content = SimpleNamespace(
                metric_records={"metrics": MetricRecord({"partition-id": client})},
                config_records={"identity": ConfigRecord({"address": address, "host": "lab"})},
            )
            yield SimpleNamespace(
                has_content=lambda: True,
                metadata=SimpleNamespace(src_node_id=message.node),
                content=content,
            )


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(joining, "POLL_S", 0.001)


def wait(grid, roster, published, timeout_s=5.0, required=2, stop=lambda: False):
    def publish(type_, **fields):
        published.append({"type": type_, **fields})

    return joining.clients_joined(
        grid, roster, timeout_s=timeout_s, required=required, publish=publish,
        read_commands=lambda: None, stop_requested=stop,
    )  # fmt: skip


def test_the_run_starts_once_every_client_has_joined_and_says_who_came_from_where():
    grid = JoiningGrid([[], [], [71], [], [72]], {71: (1, "10.0.0.3"), 72: (0, "10.0.0.2")})
    roster, published = Roster(2), []

    assert wait(grid, roster, published) is None

    assert roster.client(71) == 1 and roster.client(72) == 0
    waiting = [
        (e["joined"], e["missing"]) for e in published if e["type"] == ev.WAITING_FOR_CLIENTS
    ]
    assert waiting == [([], [0, 1]), ([1], [0])]  # each change once, not every poll
    joined = [(e["client"], e["address"]) for e in published if e["type"] == ev.CLIENT_JOINED]
    assert joined == [(1, "10.0.0.3"), (0, "10.0.0.2")]
    assert grid.asked == [(joining.PARTITION_QUERY, 71), (joining.PARTITION_QUERY, 72)]


def test_clients_that_never_join_are_named_when_the_time_is_up():
    roster, published = Roster(3), []
    grid = JoiningGrid([[71]], {71: (0, "10.0.0.2")})

    why = wait(grid, roster, published, timeout_s=0.05, required=3)

    assert why == (
        "client(s) 1, 2 did not join within 0.05 s (fedtui join ADDRESS --partition-id I on "
        "each client host)"
    )


def test_min_clients_lets_the_run_start_without_the_missing_ones():
    roster, published = Roster(2), []
    grid = JoiningGrid([[71]], {71: (0, "10.0.0.2")})

    assert wait(grid, roster, published, timeout_s=0.05, required=1) is None

    assert published[-1]["type"] == ev.WARNING
    assert "client(s) 1 did not join" in published[-1]["message"]
    assert roster.gone == {1}  # no round waits for it


def test_a_node_claiming_a_client_the_run_does_not_have_is_set_aside():
    roster, published = Roster(2), []
    grid = JoiningGrid([[71, 72, 73]], {71: (0, "a"), 72: (5, "10.9.9.9"), 73: (1, "b")})

    assert wait(grid, roster, published) is None

    assert roster.client(72) is None and 72 in roster.dead_nodes
    (warning,) = [e["message"] for e in published if e["type"] == ev.WARNING]
    assert warning == (
        "node 72 from 10.9.9.9 set aside: it says it is client 5; this run has clients 0-1"
    )


def test_a_node_claiming_a_client_another_live_node_is_is_set_aside_until_that_node_is_gone():
    roster, published = Roster(2), []
    grid = JoiningGrid([[71, 72], [74]], {71: (0, "a"), 72: (1, "b"), 74: (0, "10.6.6.6")})
    assert wait(grid, roster, published) is None

    def publish(type_, **fields):
        published.append({"type": type_, **fields})

    joining.identify(grid, roster, publish)  # 74 comes online, saying it is client 0
    joining.identify(grid, roster, publish)

    assert roster.client(71) == 0 and 71 not in roster.dead_nodes  # not evicted
    assert roster.client(74) is None
    (warning,) = [e["message"] for e in published if e["type"] == ev.WARNING]  # said once
    assert warning == (
        "node 74 from 10.6.6.6 says it is client 0, which node 71 is: set aside while that "
        "node is there"
    )
    grid.online.remove(71)  # its node is gone: the newcomer may be client 0 now
    joining.identify(grid, roster, publish)
    assert roster.client(74) == 0


def test_a_stop_ends_the_wait_at_once():
    roster, published = Roster(2), []
    grid = JoiningGrid([], {})

    assert wait(grid, roster, published, timeout_s=600, stop=lambda: True) is None
