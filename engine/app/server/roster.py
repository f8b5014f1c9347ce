"""Which Flower node is which client, and which nodes are dead, as the ServerApp knows it.

The SuperLink learns that a SuperNode is gone only when its heartbeat expires (about a minute);
until then it offers the dead node to the strategy, whose message would never be answered. The
controller owns the client's processes, so it knows at once: it tells the ServerApp which node
each client's SuperNode registered as, and which client crashed (`client_crashed`, with whether
its node died and whether the client comes back). The roster folds those commands; `LiveGrid`
shows the strategy only the nodes that are alive, and the round loop stops waiting for the
reply of a client that crashed. The controller also passes on when a client began and ended a
round's training (`client_training`, from its progress events): the round loop leaves the
SuperLink alone while no reply can be in (engine.app.server.replies).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from engine.core import commands


@dataclass
class Roster:
    num_clients: int
    client_of_node: dict[int, int] = field(default_factory=dict)
    dead_nodes: dict[int, str] = field(default_factory=dict)  # node -> why
    gone: set[int] = field(default_factory=set)  # clients that will not come back this run
    # A client whose node lives on but whose work of a round was lost (its worker died):
    # (client, round) -> why
    lost_work: dict[tuple[int, int], str] = field(default_factory=dict)
    # Joined nodes that claimed a client another live node is (warned about once)
    set_aside: set[int] = field(default_factory=set)
    # (client, round) -> whether its training is done, for clients whose progress is seen
    trained: dict[tuple[int, int], bool] = field(default_factory=dict)

    def node_registered(self, node: int, client: int) -> None:
        """`client`'s SuperNode is `node`; an earlier node of the same client is dead. (A late
        word about a node already dead changes nothing.)"""
        if node in self.dead_nodes:
            return
        for old, owner in list(self.client_of_node.items()):
            if owner == client and old != node:
                self.dead_nodes.setdefault(old, f"client {client} registered again as node {node}")
        self.client_of_node[node] = client
        self.gone.discard(client)

    def client_crashed(
        self,
        client: int,
        reason: str,
        *,
        node_dead: bool,
        coming_back: bool,
        server_round: int | None,
    ) -> None:
        """A message to a dead node is never answered, whatever its round; a dead worker loses
        only the round it was in (its node serves the next one)."""
        if node_dead:
            for node, owner in self.client_of_node.items():
                if owner == client:
                    self.dead_nodes.setdefault(node, reason)
        elif server_round is not None:
            self.lost_work[(client, server_round)] = reason
        if not coming_back:
            self.gone.add(client)

    def lost(self, node: int, server_round: int) -> str | None:
        """Why a reply from `node` for `server_round` will never come, or None."""
        if node in self.dead_nodes:
            return self.dead_nodes[node]
        client = self.client(node)
        return None if client is None else self.lost_work.get((client, server_round))

    def training(self, node: int, server_round: int) -> bool:
        """Whether `node`'s client is known to be training `server_round`: its reply is not
        in yet."""
        client = self.client(node)
        return client is not None and self.trained.get((client, server_round)) is False

    def client(self, node: int) -> int | None:
        return self.client_of_node.get(node)

    def holder(self, client: int, online: Iterable[int]) -> int | None:
        """The live node, of those `online`, that is `client`, if one is."""
        for node in self.live(online):
            if self.client_of_node.get(node) == client:
                return node
        return None

    def name(self, node: int) -> str:
        client = self.client(node)
        return f"client {client}" if client is not None else f"node {node}"

    def live(self, nodes: Iterable[int]) -> list[int]:
        return [node for node in nodes if node not in self.dead_nodes]

    @property
    def expected(self) -> int:
        """How many clients should be connected: all but those gone for good."""
        return self.num_clients - len(self.gone)

    def apply(self, command: dict[str, Any]) -> bool:
        """Fold a controller command; False when it is not the roster's."""
        kind = command["command"]
        if kind == commands.CLIENT_OF_NODE:
            self.node_registered(int(command["node_id"]), int(command["client"]))
        elif kind == commands.CLIENT_CRASHED:
            server_round = command.get("round")
            self.client_crashed(
                int(command["client"]),
                str(command["reason"]),
                node_dead=bool(command["node_dead"]),
                coming_back=bool(command["coming_back"]),
                server_round=None if server_round is None else int(server_round),
            )
        elif kind == commands.CLIENT_TRAINING:
            self.trained[(int(command["client"]), int(command["round"]))] = bool(command["done"])
        else:
            return False
        return True


class LiveGrid(Grid):
    """The run's Grid, minus the nodes the roster knows are dead, and within `only` the nodes
    sampled for the round: what the strategy picks from."""

    def __init__(self, grid: Grid, roster: Roster) -> None:
        self._grid = grid
        self._roster = roster
        self._only: set[int] | None = None

    def get_node_ids(self) -> list[int]:
        live = self._roster.live(self._grid.get_node_ids())
        return live if self._only is None else [node for node in live if node in self._only]

    @contextmanager
    def only(self, nodes: Iterable[int]) -> Iterator[None]:
        self._only = set(nodes)
        try:
            yield
        finally:
            self._only = None

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self._grid.send_and_receive(messages, timeout=timeout)
