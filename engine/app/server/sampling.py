"""Which clients train in a round: `clients_per_round` of them, drawn with the run's seed.

The draw is over client (partition) ids, not over Flower's node ids, which are random for every
run: a seed then names the same clients round by round in every run, on either backend. The
ServerApp knows which node is which client from the controller (deployment, one SuperNode per
client) or, in Flower's simulation runtime, where nodes are virtual, by asking every node once
(`discover_clients`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from flwr.app import RecordDict
from flwr.serverapp import Grid

from engine.app.flower_records import number
from engine.app.server.roster import Roster

PARTITION_QUERY = "query.partition"  # answered by engine.app.client_app.partition
MAPPING_WAIT_S = 30.0
_POLL_S = 0.1


def sample_clients(clients: list[int], count: int, seed: int, server_round: int) -> list[int]:
    """`count` of `clients` (all when `count` is 0 or not smaller), the same for the same
    seed, round and clients."""
    pool = sorted(clients)
    if count <= 0 or count >= len(pool):
        return pool
    return sorted(random.Random(f"fedtui-clients:{seed}:{server_round}").sample(pool, count))


def round_nodes(
    grid: Grid,
    roster: Roster,
    clients_per_round: int,
    seed: int,
    server_round: int,
    read_commands: Callable[[], None],
    *,
    every_client_known: bool = False,
) -> list[tuple[int | None, int]]:
    """(client, node) of each client that trains the round: every live node when all train
    (one whose client is not known yet as None, unless `every_client_known`: then only nodes
    whose client is known once the word has had its moment to come), else a seeded draw of
    clients."""
    if not clients_per_round and not every_client_known:
        return [(roster.client(node), node) for node in grid.get_node_ids()]
    nodes = nodes_by_client(grid, roster, read_commands)
    if not clients_per_round:
        return sorted(nodes.items())
    chosen = sample_clients(list(nodes), clients_per_round, seed, server_round)
    return [(client, nodes[client]) for client in chosen]


def nodes_by_client(
    grid: Grid, roster: Roster, read_commands: Callable[[], None]
) -> dict[int, int]:
    """client -> node for every live node, once each live node's client is known (the word
    of a SuperNode's registration can come a moment after the node itself)."""
    deadline = time.monotonic() + MAPPING_WAIT_S
    while True:
        read_commands()
        nodes = grid.get_node_ids()
        known = {roster.client(node): node for node in nodes}
        if None not in known or time.monotonic() >= deadline:
            return {client: node for client, node in known.items() if client is not None}
        time.sleep(_POLL_S)


def discover_clients(grid: Grid, roster: Roster, timeout_s: float) -> None:
    """Ask every node which client it is, and fold the answers into the roster."""
    messages = [
        grid.create_message(RecordDict(), PARTITION_QUERY, node, group_id="partitions")
        for node in grid.get_node_ids()
    ]
    for reply in grid.send_and_receive(messages, timeout=timeout_s):
        if reply.has_content():
            client = number(reply.content.metric_records["metrics"], "partition-id")
            roster.node_registered(reply.metadata.src_node_id, int(client))
