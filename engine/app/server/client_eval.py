"""Per-client evaluation (`client_eval`): the round's global model, sent to each client that
took part, evaluated on the client's own held-out samples (engine.app.client_app.evaluate).

Central evaluation says how the global model does on the server's data; this says how it does
on each client's, which is what a non-IID federation hides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp import Grid

from engine.app.flower_records import error_text, number
from engine.app.server.roster import Roster
from engine.core import events as ev


def evaluate_on_clients(
    grid: Grid,
    roster: Roster,
    nodes: Iterable[int],
    model: tuple[ArrayRecord, ConfigRecord],
    *,
    server_round: int,
    timeout: float,
    publish: Callable[..., None],
) -> None:
    """A `client_eval` event per client that answered, an `error` naming each one that did
    not. `model`: the global model's arrays, or a record naming its shared weights file
    (engine.app.shared_weights)."""
    arrays, file_record = model
    config = ConfigRecord({"server-round": server_round, **file_record})
    messages = [
        grid.create_message(
            RecordDict({"arrays": arrays, "config": config}),
            "evaluate",
            node,
            group_id=f"evaluate-{server_round}",
        )
        for node in roster.live(nodes)
    ]
    answered = set()
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = reply.metadata.src_node_id
        answered.add(node)
        if reply.has_error():
            _failed(publish, roster, node, server_round, error_text(reply.error.reason))
            continue
        metrics = reply.content.metric_records["metrics"]
        publish(
            ev.CLIENT_EVAL,
            round=server_round,
            client=int(number(metrics, "partition-id")),
            eval_loss=metrics["eval-loss"],
            examples=int(number(metrics, "num-examples")),
        )
    for message in messages:
        node = message.metadata.dst_node_id
        if node not in answered:
            _failed(publish, roster, node, server_round, f"no reply within {timeout:g} s")


def _failed(publish, roster: Roster, node: int, server_round: int, why: str) -> None:
    publish(
        ev.ERROR,
        source="clientapp",
        round=server_round,
        client=roster.client(node),
        message=f"{roster.name(node)}'s evaluation failed in round {server_round}: {why}",
    )
