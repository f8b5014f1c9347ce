"""Which Flower strategy a run uses: it picks the clients of each round and what they are sent
(FedProx adds its `proximal-mu` to the config; the proximal term itself is the client's job)."""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx

from engine.app.flower_records import number
from engine.core.config import RunConfig


def weighted_train_loss(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted mean of the clients' train losses."""
    metrics = [record.metric_records["metrics"] for record in records]
    pairs = [(number(m, "train-loss"), number(m, weight_key)) for m in metrics]
    total = sum(weight for _, weight in pairs)
    return MetricRecord({"train-loss": sum(loss * weight for loss, weight in pairs) / total})


def build_strategy(config: RunConfig) -> FedAvg:
    common: dict[str, Any] = dict(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        # Every live client trains (fraction 1); the round loop waits for the expected ones.
        min_train_nodes=config.required_replies,
        min_available_nodes=config.required_replies,
        train_metrics_aggr_fn=weighted_train_loss,
    )
    if config.strategy == "fedprox":
        return FedProx(proximal_mu=config.proximal_mu, **common)
    if config.strategy == "fedavgm" and config.aggregation == "flower":
        return FedAvgM(
            server_learning_rate=config.server_learning_rate,
            server_momentum=config.server_momentum,
            **common,
        )
    # FedAvgM's server step is ServerMomentum's when aggregating as replies arrive; Flower's
    # FedAvgM would also keep the first round's model for an aggregate_train never called.
    return FedAvg(**common)


def update_strategy(strategy: FedAvg, config: RunConfig) -> None:
    """A live change of the config (engine.app.server.between_rounds), into the strategy's own
    parameters: they decide the next round's messages and its aggregation."""
    strategy.min_train_nodes = strategy.min_available_nodes = config.required_replies
    if isinstance(strategy, FedProx):
        strategy.proximal_mu = config.proximal_mu
    if isinstance(strategy, FedAvgM):
        strategy.server_learning_rate = config.server_learning_rate
        strategy.server_momentum = config.server_momentum


FLOWER_MOMENTUM = "flower_momentum."  # Flower's FedAvgM's momentum, in a checkpoint


def strategy_state(strategy: FedAvg, names: list[str]) -> dict[str, torch.Tensor]:
    """What Flower's own FedAvgM keeps between rounds (`aggregation = "flower"`): its momentum,
    one array per trainable weight in `names`' order."""
    momentum = getattr(strategy, "momentum_vector", None)
    if not momentum:
        return {}
    return {FLOWER_MOMENTUM + name: torch.from_numpy(array) for name, array in zip(names, momentum)}


def restore_strategy_state(
    strategy: FedAvg, state: dict[str, torch.Tensor], names: list[str]
) -> None:
    if isinstance(strategy, FedAvgM) and FLOWER_MOMENTUM + names[0] in state:
        strategy.momentum_vector = [state[FLOWER_MOMENTUM + name].numpy() for name in names]
