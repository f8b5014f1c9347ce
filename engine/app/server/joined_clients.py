"""Clients that join from other hosts (`fedtui serve` / `fedtui join`).

No controller starts these clients, so none can tell the ServerApp which node is which client:
the ServerApp asks each new node (the partition query, answered with the partition id, address
and host name its `fedtui join` gave it), says who has joined and who is missing, and starts
round 0 once every client is there. When the run ends it tells every node so (the `finished`
query), and each `fedtui join` exits with the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flwr.app import ConfigRecord, RecordDict
from flwr.serverapp import Grid

from engine.app.flower_records import number
from engine.app.server.roster import Roster
from engine.app.server.sampling import PARTITION_QUERY
from engine.core import events as ev

FINISHED_QUERY = "query.finished"  # answered by engine.app.client_app.finished
ASK_TIMEOUT_S = 30.0
GOODBYE_TIMEOUT_S = 15.0
REPORT_EVERY_S = 30.0
POLL_S = 0.5

Publish = Callable[..., None]


def clients_joined(
    grid: Grid,
    roster: Roster,
    *,
    timeout_s: float,
    required: int,
    publish: Publish,
    read_commands: Callable[[], None],
    stop_requested: Callable[[], bool],
) -> str | None:
    """Wait for every client to join, for at most `timeout_s` or until a stop is requested;
    None when at least `required` did or the run is stopping (a warning names the others, and
    no round waits for them), else why the run cannot start."""
    missing = wait_for_joins(
        grid,
        roster,
        timeout_s=timeout_s,
        publish=publish,
        read_commands=read_commands,
        stop_requested=stop_requested,
    )
    if not missing or stop_requested():
        return None
    joined = roster.num_clients - len(missing)
    message = f"client(s) {', '.join(map(str, missing))} did not join within {timeout_s:g} s"
    if joined < required:
        return f"{message} (fedtui join ADDRESS --partition-id I on each client host)"
    publish(ev.WARNING, message=f"{message}: going on with {joined} (min_clients)")
    roster.gone.update(missing)  # a late join is still welcome
    return None


def wait_for_joins(
    grid: Grid,
    roster: Roster,
    *,
    timeout_s: float,
    publish: Publish,
    read_commands: Callable[[], None],
    stop_requested: Callable[[], bool] = lambda: False,
) -> list[int]:
    """Wait until every client has joined, for at most `timeout_s` or until a stop is
    requested; the clients still missing."""
    deadline = time.monotonic() + timeout_s
    reported: tuple[list[int], list[int]] | None = None
    next_report = 0.0
    while True:
        read_commands()
        nodes = identify(grid, roster, publish)
        live = [roster.client(node) for node in roster.live(nodes)]
        joined = sorted({client for client in live if client is not None})
        missing = [client for client in range(roster.num_clients) if client not in joined]
        now = time.monotonic()
        if not missing or now >= deadline or stop_requested():
            return missing
        if (joined, missing) != reported or now >= next_report:
            publish(
                ev.WAITING_FOR_CLIENTS,
                joined=joined,
                missing=missing,
                seconds_left=round(deadline - now),
            )
            reported, next_report = (joined, missing), now + REPORT_EVERY_S
        time.sleep(POLL_S)


def identify(grid: Grid, roster: Roster, publish: Publish) -> list[int]:
    """Ask each node not known yet which client it is; fold the answers into the roster. A node
    claiming a partition the run does not have is set aside, with a warning; one claiming a
    client another live node is, until that node is gone. The nodes online."""
    nodes = grid.get_node_ids()
    unknown = [
        node for node in nodes if roster.client(node) is None and node not in roster.dead_nodes
    ]
    if not unknown:
        return list(nodes)
    messages = [
        grid.create_message(RecordDict(), PARTITION_QUERY, node, group_id="joining")
        for node in unknown
    ]
    for reply in grid.send_and_receive(messages, timeout=ASK_TIMEOUT_S):
        if not reply.has_content():
            continue
        node = reply.metadata.src_node_id
        client = int(number(reply.content.metric_records["metrics"], "partition-id"))
        identity = reply.content.config_records.get("identity", ConfigRecord())
        address, host = str(identity.get("address", "?")), str(identity.get("host", ""))
        if not 0 <= client < roster.num_clients:
            why = f"it says it is client {client}; this run has clients 0-{roster.num_clients - 1}"
            roster.dead_nodes[node] = why
            publish(ev.WARNING, message=f"node {node} from {address} set aside: {why}")
            continue
        holder = roster.holder(client, nodes)
        if holder is not None:  # a client cannot take a live client's place
            if node not in roster.set_aside:
                roster.set_aside.add(node)
                publish(
                    ev.WARNING,
                    message=f"node {node} from {address} says it is client {client}, which node "
                    f"{holder} is: set aside while that node is there",
                )
            continue
        roster.set_aside.discard(node)
        roster.node_registered(node, client)
        publish(ev.CLIENT_JOINED, client=client, node_id=node, address=address, host=host)
    return list(nodes)


def say_goodbye(grid: Grid, roster: Roster, status: str) -> None:
    """Tell every live node the run is over (its `fedtui join` then exits), and wait a moment
    for them to have heard it: the SuperLink ends right after."""
    nodes = roster.live(grid.get_node_ids())
    content = RecordDict({"run": ConfigRecord({"status": status})})
    messages = [
        grid.create_message(content, FINISHED_QUERY, node, group_id="finished") for node in nodes
    ]
    if messages:
        list(grid.send_and_receive(messages, timeout=GOODBYE_TIMEOUT_S))
