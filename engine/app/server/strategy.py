"""Which Flower strategy a run uses: it picks the clients of each round and what they are sent
(FedProx adds its `proximal-mu` to the config; the proximal term itself is the client's job)."""

from __future__ import annotations

from typing import Any

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
