"""SCAFFOLD's server side (Karimireddy et al. 2020, option II; engine.ml.control_variates has
the client's): the server control variate c and every client's c_i.

The server keeps them all (CPU memory, fp32: one set of trainable tensors per client that has
trained, plus c) and saves them in each round's checkpoint. A client holds no variate between
rounds: each round it is sent d_i = c - c_i beside the global model and answers with its new
c_i beside its weights (in Flower's messages, or through shared memory as the weights go). So a
restarted worker, a Ray actor taking turns with many clients, a client host that joined again,
`--resume` and a fork all train with exactly the variate the run would have had; and the
variates double what travels each way, which the round's record counts (`variate_bytes_sent`,
`variate_bytes_received`). The server's update is the paper's:
    x <- x + eta_g * mean(y_i - x)      (ServerMomentum without momentum, example-weighted mean)
    c <- c + (1/N) * sum over the round's replies of (c_i+ - c_i),   N = num_clients,
so a round that samples |S| clients moves c by |S|/N of their mean change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from engine.app import shared_weights
from engine.app.flower_records import number
from engine.app.transfer import (
    CORRECTION_RECORD,
    VARIATE_RECORD,
    carried,
    size_of,
    tensors_to_arrays,
    weights_in,
)
from engine.core.config import RunConfig

SERVER_PREFIX = "scaffold_c."  # c's tensors in a checkpoint's server state
CLIENT_PREFIX = "scaffold_client{}."  # client i's c_i there


class ControlVariates:
    def __init__(
        self, weights: Mapping[str, torch.Tensor], num_clients: int, transfer_dtype: str
    ) -> None:
        """`weights`: the global model's trainable tensors, whose names and shapes the variates
        take."""
        self.num_clients = num_clients
        self.transfer_dtype = transfer_dtype
        self.server = {name: _zeros(tensor) for name, tensor in weights.items()}
        self.clients: dict[int, dict[str, torch.Tensor]] = {}
        self._change: dict[str, torch.Tensor] = {}  # this round's sum of c_i+ - c_i
        self.bytes_received = 0  # this round's variates

    @classmethod
    def for_run(
        cls, config: RunConfig, weights: Mapping[str, torch.Tensor]
    ) -> ControlVariates | None:
        """A SCAFFOLD run's variates, all zero at its start; None for other strategies."""
        if config.strategy != "scaffold":
            return None
        return cls(weights, config.num_clients, config.transfer_dtype)

    def with_corrections(
        self, messages: Iterable[Message], clients: Mapping[int, int], shared: Path | None
    ) -> tuple[list[Message], int]:
        """Each train message with its client's d_i = c - c_i (`clients`: node -> client), in
        it or, where the global model goes through the shared file `shared`, in a file beside
        it; and the bytes they add. A node whose client is not known is left out of the round.
        Flower's strategy gives every message one shared content: each gets its own."""
        sent, size = [], 0
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in clients:
                continue
            tensors = self._correction(clients[node])
            correction: ArrayRecord | ConfigRecord
            if shared is not None:
                path = shared_weights.correction_file(shared, clients[node])
                size += shared_weights.write(path, tensors, self.transfer_dtype)
                correction = shared_weights.naming(path)
            else:
                correction = tensors_to_arrays(tensors, self.transfer_dtype)
                size += correction.count_bytes()
            content = RecordDict({**dict(message.content.items()), CORRECTION_RECORD: correction})
            sent.append(
                Message(
                    content=content,
                    message_type=message.metadata.message_type,
                    dst_node_id=node,
                )
            )
        return sent, size

    def _correction(self, client: int) -> dict[str, torch.Tensor]:
        own = self.clients.get(client)
        if own is None:
            return self.server
        return {name: self.server[name] - own[name] for name in self.server}

    def taking_variates(self, replies: Iterable[Message]) -> Iterator[Message]:
        """The replies, unchanged but for their variates, each folded into its client's c_i as
        it passes (checked already: engine.app.server.reply_checks)."""
        self._change, self.bytes_received = {}, 0
        for reply in replies:
            if not reply.has_error():
                self._take(reply)
            yield reply

    @torch.no_grad()
    def _take(self, reply: Message) -> None:
        source = carried(reply.content, VARIATE_RECORD)
        if source is None:  # no optimizer step this round: c_i stays
            return
        client = int(number(reply.content.metric_records["metrics"], "partition-id"))
        self.bytes_received += size_of(source)
        _, tensors = weights_in(source)
        variate = {name: tensor.to(torch.float32, copy=True) for name, tensor in tensors}
        old = self.clients.get(client)
        for name, tensor in variate.items():
            change = tensor - old[name] if old is not None else tensor.clone()
            if name in self._change:
                self._change[name].add_(change)
            else:
                self._change[name] = change
        self.clients[client] = variate

    @torch.no_grad()
    def finish_round(self) -> None:
        """c moves by its sampled share of the round's changes."""
        for name, change in self._change.items():
            self.server[name].add_(change, alpha=1.0 / self.num_clients)
        self._change = {}

    def state(self) -> dict[str, torch.Tensor]:
        """c and every c_i, as a checkpoint keeps them."""
        state = {SERVER_PREFIX + name: tensor for name, tensor in self.server.items()}
        for client, variate in self.clients.items():
            prefix = CLIENT_PREFIX.format(client)
            state.update({prefix + name: tensor for name, tensor in variate.items()})
        return state

    def restore(self, state: Mapping[str, torch.Tensor]) -> None:
        """The variates a checkpoint kept (none: a run that was not SCAFFOLD's until now)."""
        self.server = {
            name: state[SERVER_PREFIX + name].float().clone()
            if SERVER_PREFIX + name in state
            else torch.zeros_like(tensor)
            for name, tensor in self.server.items()
        }
        self.clients = {}
        for client in range(self.num_clients):
            prefix = CLIENT_PREFIX.format(client)
            if prefix + next(iter(self.server)) in state:
                self.clients[client] = {
                    name: state[prefix + name].float().clone() for name in self.server
                }


def _zeros(tensor: torch.Tensor) -> torch.Tensor:
    return torch.zeros(tensor.shape, dtype=torch.float32)
