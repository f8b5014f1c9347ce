"""Server-side aggregation, folded in one reply at a time.

Flower's `strategy.aggregate_train` takes every reply at once, so a server holding N clients'
models needs N model copies at the end of each round. `WeightedMean` folds each reply in as it
arrives and lets it go; `ServerMomentum` then applies FedAvgM's server step exactly as Flower's
`FedAvgM.aggregate_train` does. The result is the same as Flower's, for any number of clients,
at the cost of one reply at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import Array, ArrayRecord, Message
from flwr.serverapp.strategy import FedAvg

from engine.app import shared_weights
from engine.app.flower_records import number
from engine.app.transfer import load_arrays, size_of, weights_in
from engine.core.config import RunConfig
from engine.ml.model import check_names


class WeightedMean:
    """The example-weighted mean of client replies.

    The sum is kept in `into` (the server model's own weights: FedAvg and FedProx need nothing
    of the previous global model once it has been sent).
    """

    def __init__(self, into: Mapping[str, torch.Tensor]) -> None:
        self.into = into
        self.total_weight = 0.0

    @torch.no_grad()
    def add(self, source: ArrayRecord | Path, weight: float) -> None:
        """Fold in one reply's weights: a record (emptied, so its bytes can go) or a shared
        weights file."""
        names, tensors = weights_in(source)
        check_names(self.into, names)
        if self.total_weight == 0:
            for tensor in self.into.values():
                tensor.zero_()
        for name, tensor in tensors:
            target = self.into[name]
            target.add_(tensor.to(target.device), alpha=weight)
        self.total_weight += weight

    @torch.no_grad()
    def finish(self) -> None:
        """Divide by the total weight: `into` now holds the mean."""
        for tensor in self.into.values():
            tensor.div_(self.total_weight)


VELOCITY = "velocity."  # the prefix of its state's names in a checkpoint


class ServerMomentum:
    """FedAvgM's server optimizer (Hsu et al. 2019): SGD with momentum on the pseudo-gradient
    `previous global - mean of the replies`, as Flower's FedAvgM computes it."""

    def __init__(self, learning_rate: float, momentum: float) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self._previous: dict[str, torch.Tensor] = {}
        self._velocity: dict[str, torch.Tensor] = {}

    def state(self) -> dict[str, torch.Tensor]:
        """What it keeps from round to round: each weight's momentum."""
        return {VELOCITY + name: tensor for name, tensor in self._velocity.items()}

    def restore(self, state: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]):
        """Take back a saved `state` (a resumed or forked run), on the devices of `weights`."""
        self._velocity = {
            name[len(VELOCITY) :]: tensor.to(weights[name[len(VELOCITY) :]].device)
            for name, tensor in state.items()
            if name.startswith(VELOCITY)
        }

    def configure(self, config: RunConfig) -> None:
        """The run's settings, at its start or after a live change (SCAFFOLD's step has none)."""
        self.learning_rate = config.server_learning_rate
        self.momentum = config.server_momentum if config.strategy == "fedavgm" else 0.0

    @property
    def active(self) -> bool:
        return self.momentum != 0.0 or self.learning_rate != 1.0

    def remember(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Keep the global model the round starts from (before the mean overwrites it)."""
        if self.active:
            self._previous = {name: tensor.detach().clone() for name, tensor in weights.items()}

    @torch.no_grad()
    def step(self, weights: Mapping[str, torch.Tensor]) -> None:
        """`weights` hold the mean of the replies; replace it with the server's update."""
        if not self.active:
            return
        for name, tensor in weights.items():
            previous = self._previous[name]
            pseudo_gradient = previous - tensor
            if self.momentum > 0.0:
                if name in self._velocity:
                    pseudo_gradient = self._velocity[name].mul_(self.momentum).add_(pseudo_gradient)
                self._velocity[name] = pseudo_gradient
            tensor.copy_(previous - self.learning_rate * pseudo_gradient)
        self._previous = {}


@dataclass(frozen=True)
class Aggregate:
    train_loss: float | None  # example-weighted mean of the clients' train losses
    bytes_received: int


def fold_replies(
    replies: Iterable[Message],
    weights: Mapping[str, torch.Tensor],
    momentum: ServerMomentum | None = None,
) -> Aggregate | None:
    """The new global model into `weights`, folding in each reply as it arrives (FedAvg and
    FedProx; FedAvgM with `momentum`). None when no client returned a model."""
    if momentum is not None:
        momentum.remember(weights)
    mean, loss_sum, received = WeightedMean(weights), 0.0, 0
    for reply, source, size in _with_weights(replies):
        metrics = reply.content.metric_records["metrics"]
        received += size
        weight = float(number(metrics, "num-examples"))
        mean.add(source, weight)
        loss_sum += number(metrics, "train-loss") * weight
    if not mean.total_weight:
        return None
    mean.finish()
    if momentum is not None:
        momentum.step(weights)
    return Aggregate(loss_sum / mean.total_weight, received)


def _with_weights(replies: Iterable[Message]) -> Iterator[tuple[Message, ArrayRecord | Path, int]]:
    """(reply, its weights, their size) for each reply that is not an error."""
    for reply in replies:
        if not reply.has_error():
            yield reply, *reply_weights(reply)


def reply_weights(reply: Message) -> tuple[ArrayRecord | Path, int]:
    """Where a reply's weights are, its arrays or a shared weights file, and their size."""
    path = shared_weights.named_file(reply.content.config_records.get(shared_weights.REPLY_RECORD))
    source = path if path is not None else reply.content.array_records["arrays"]
    return source, size_of(source)


def aggregate_with_flower(
    strategy: FedAvg, server_round: int, replies: Iterable[Message], model: torch.nn.Module
) -> Aggregate | None:
    """Flower's own `aggregate_train`, holding every reply at once (for comparison). Weights
    that came as a shared file are put into the reply's arrays first: Flower reads them there."""
    replies = list(replies)
    received = 0
    for reply, source, size in _with_weights(replies):
        received += size
        if isinstance(source, Path):
            reply.content["arrays"] = ArrayRecord(
                {name: Array(tensor.numpy()) for name, tensor in weights_in(source)[1]}
            )
            del reply.content[shared_weights.REPLY_RECORD]
    aggregated, metrics = strategy.aggregate_train(server_round, replies)
    if aggregated is None:
        return None
    load_arrays(model, aggregated)
    return Aggregate(number(metrics, "train-loss") if metrics else None, received)
