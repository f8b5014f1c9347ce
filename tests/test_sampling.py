"""Client sampling: `clients_per_round` clients drawn with the seed, the same for the same seed
and round whatever Flower's node ids are, and only those sent the model
(engine.app.server.sampling, engine.app.server.roster.LiveGrid)."""

import dataclasses

import pytest
from flwr.app import ArrayRecord, ConfigRecord

from engine.app.server.roster import LiveGrid, Roster
from engine.app.server.sampling import nodes_by_client, round_nodes, sample_clients
from engine.app.server.strategy import build_strategy
from engine.core.config import RunConfig

pytestmark = pytest.mark.usefixtures("serverapp_identity")


class NodesOnly:
    def __init__(self, nodes):
        self.nodes = list(nodes)

    def get_node_ids(self):
        return list(self.nodes)


def test_a_seed_draws_the_same_clients_each_round_in_every_run():
    clients = list(range(20))

    draws = [sample_clients(clients, 4, seed=7, server_round=r) for r in range(1, 11)]

    assert draws == [sample_clients(clients[::-1], 4, seed=7, server_round=r) for r in range(1, 11)]
    assert all(len(set(draw)) == 4 and set(draw) <= set(clients) for draw in draws)
    assert len({tuple(draw) for draw in draws}) > 1  # rounds differ
    assert draws != [sample_clients(clients, 4, seed=8, server_round=r) for r in range(1, 11)]


def test_without_clients_per_round_every_client_trains():
    assert sample_clients([3, 1, 2], 0, seed=0, server_round=1) == [1, 2, 3]
    assert sample_clients([3, 1, 2], 5, seed=0, server_round=1) == [1, 2, 3]


def test_only_the_sampled_nodes_are_sent_the_model():
    config = dataclasses.replace(RunConfig(), num_clients=6, clients_per_round=2)
    roster = Roster(6)
    for client in range(6):
        roster.node_registered(1000 + client, client)
    grid = LiveGrid(NodesOnly(1000 + c for c in range(6)), roster)
    sampled = sample_clients(list(range(6)), 2, seed=0, server_round=1)

    with grid.only(1000 + client for client in sampled):
        messages = list(
            build_strategy(config).configure_train(1, ArrayRecord(), ConfigRecord(), grid)
        )

    assert sorted(m.metadata.dst_node_id - 1000 for m in messages) == sampled
    assert len(grid.get_node_ids()) == 6  # the restriction lasts one round's configure


def test_the_draw_waits_until_each_node_is_known_as_a_client():
    roster = Roster(3)
    roster.node_registered(11, 0)
    grid = NodesOnly([11, 12, 13])
    late_words = iter([[], [(12, 1)], [(13, 2)]])

    def read_commands():
        for node, client in next(late_words, []):
            roster.node_registered(node, client)

    assert nodes_by_client(grid, roster, read_commands) == {0: 11, 1: 12, 2: 13}


def test_a_round_whose_clients_must_be_known_waits_for_their_word_when_all_train():
    """SCAFFOLD sends each client its own variates: with every client training, the round still
    waits for each node's client, as a draw does, rather than taking a node as None."""
    roster = Roster(2)
    roster.node_registered(11, 0)
    grid = NodesOnly([11, 12])
    late_words = iter([[], [(12, 1)]])

    def read_commands():
        for node, client in next(late_words, []):
            roster.node_registered(node, client)

    assert round_nodes(grid, roster, 0, 0, 1, lambda: None)[1] == (None, 12)
    assert round_nodes(grid, roster, 0, 0, 1, read_commands, every_client_known=True) == [
        (0, 11),
        (1, 12),
    ]
