"""A round's replies into the new global model, by the run's strategy, with Flower's own math.

- FedAvg, FedProx, FedAvgM, SCAFFOLD: the replies are folded in one at a time as they arrive
  (engine.app.server.aggregation), FedAvgM's server step after them (SCAFFOLD's global step
  size is the same step without momentum), SCAFFOLD's variates taken from each reply as it
  passes (engine.app.server.scaffold).
- FedAdam, FedYogi, FedAdagrad: their server update needs only the example-weighted mean of the
  replies, so that mean is streamed the same way and then handed to Flower's strategy as its one
  reply (weight 1): Flower's `aggregate_train` takes the mean of one reply (itself, exactly) and
  applies its own update, moments and all.
- FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan, QFedAvg: order statistics, distances between
  replies and per-reply losses need every reply at once, so Flower's `aggregate_train` gets them
  all, as `aggregation = "flower"` does for every strategy.

Flower's FedOpt, QFedAvg and FedAvgM take the global model a round started from in
`configure_train`, from the arrays sent; those may have travelled in fp16 or as a shared file,
so `aggregate_round` gives them the server's own fp32 weights instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdagrad, FedAdam, FedAvg, FedAvgM, FedYogi, QFedAvg

from engine.app.server.aggregation import (
    Aggregate,
    ServerMomentum,
    aggregate_with_flower,
    fold_replies,
)
from engine.app.server.scaffold import ControlVariates
from engine.app.transfer import load_arrays
from engine.core.config import RunConfig
from engine.core.strategies import WHOLE_ROUND
from engine.ml.model import trainable_weights

FEDOPT = (FedAdam, FedYogi, FedAdagrad)  # Flower's FedOpt, their base class, is not exported


def aggregate_round(
    strategy: FedAvg,
    config: RunConfig,
    server_round: int,
    replies: Iterable[Message],
    model: torch.nn.Module,
    momentum: ServerMomentum | None,
    variates: ControlVariates | None = None,
) -> Aggregate | None:
    """The new global model into `model` (whose trainable weights hold the round's starting
    model until then); None when no client returned a model."""
    weights = trainable_weights(model)
    _starting_model(strategy, weights)
    if config.aggregation == "flower" or config.strategy in WHOLE_ROUND:
        return aggregate_with_flower(strategy, server_round, replies, model)
    if variates is not None:
        result = fold_replies(variates.taking_variates(replies), weights, momentum)
        variates.finish_round()
        if result is None:
            return None
        received = result.bytes_received + variates.bytes_received
        return dataclasses.replace(result, bytes_received=received)
    result = fold_replies(replies, weights, momentum)
    if result is not None and isinstance(strategy, FEDOPT):
        _server_update(strategy, server_round, model, weights)
    return result


def server_step(config: RunConfig) -> ServerMomentum | None:
    """FedAvgM's server optimizer, or SCAFFOLD's global step size (the same step, no momentum);
    None for the other strategies."""
    if config.strategy not in ("fedavgm", "scaffold"):
        return None
    step = ServerMomentum(1.0, 0.0)
    step.configure(config)
    return step


def _starting_model(strategy: FedAvg, weights: Mapping[str, torch.Tensor]) -> None:
    if isinstance(strategy, FEDOPT):
        strategy.current_arrays = {name: _numpy(tensor) for name, tensor in weights.items()}
    elif isinstance(strategy, (QFedAvg, FedAvgM)):
        strategy.current_arrays = ArrayRecord(
            {name: Array(_numpy(tensor)) for name, tensor in weights.items()}
        )


def _server_update(
    strategy: FedAvg, server_round: int, model: torch.nn.Module, weights: Mapping[str, torch.Tensor]
) -> None:
    """`weights` hold the replies' mean: Flower's FedOpt update of it into `model`."""
    mean = RecordDict(
        {
            "arrays": ArrayRecord(
                {name: Array(_numpy(tensor)) for name, tensor in weights.items()}
            ),
            # The round's train loss is the fold's; Flower's metrics function only reads one.
            "metrics": MetricRecord({strategy.weighted_by_key: 1, "train-loss": 0.0}),
        }
    )
    one_reply = Message(content=mean, dst_node_id=0, message_type=MessageType.TRAIN)
    updated, _ = strategy.aggregate_train(server_round, [one_reply])
    if updated is None:  # Flower returns None only for no replies; one is there
        raise RuntimeError(f"{type(strategy).__name__} returned no model")
    load_arrays(model, updated)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A copy on the CPU: the tensor is about to be overwritten in place."""
    return tensor.detach().cpu().numpy().copy()
