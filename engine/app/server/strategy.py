"""Which Flower strategy a run uses, by config name (engine.core.strategies): it picks the clients
of each round, what they are sent (FedProx adds its `proximal-mu` to the config; the proximal
term itself is the client's job) and, where fedtui does not stream it, the aggregation
(engine.app.server.aggregate_round). What a strategy keeps between rounds is checkpointed
through `strategy_state` / `restore_strategy_state`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
)

from engine.app.flower_records import number
from engine.core.config import RunConfig
from engine.core.strategies import server_eta


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
    name = config.strategy
    if name == "fedprox":
        return FedProx(proximal_mu=config.proximal_mu, **common)
    if name == "fedavgm" and config.aggregation == "flower":
        return FedAvgM(
            server_learning_rate=config.server_learning_rate,
            server_momentum=config.server_momentum,
            **common,
        )
    # Flower's FedOpt keeps eta_l (the clients' learning rate) for its summary only.
    fedopt: dict[str, Any] = dict(
        eta=server_eta(config.to_dict()), eta_l=config.learning_rate, tau=config.tau
    )
    if name == "fedadagrad":
        return FedAdagrad(**fedopt, **common)
    if name in ("fedadam", "fedyogi"):
        optimizer = FedAdam if name == "fedadam" else FedYogi
        return optimizer(**fedopt, beta_1=config.beta_1, beta_2=config.beta_2, **common)
    if name == "fedmedian":
        return FedMedian(**common)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(beta=config.beta, **common)
    if name in ("krum", "bulyan"):
        robust = Krum if name == "krum" else Bulyan
        return robust(num_malicious_nodes=config.num_malicious_nodes, **common)
    if name == "multikrum":
        return MultiKrum(
            num_malicious_nodes=config.num_malicious_nodes,
            num_nodes_to_select=config.num_nodes_to_select,
            **common,
        )
    if name == "qfedavg":
        return QFedAvg(
            client_learning_rate=config.learning_rate,
            q=config.q,
            train_loss_key="train-loss",
            **common,
        )
    # FedAvgM's server step is ServerMomentum's when aggregating as replies arrive; Flower's
    # FedAvgM would also keep the first round's model for an aggregate_train never called.
    return FedAvg(**common)


# What a live change may set on each kind of strategy: its attribute, from the config key of
# that name (FedAdagrad has no betas: Flower fixes its beta_1 at 0).
_LIVE: dict[type, tuple[str, ...]] = {
    FedProx: ("proximal_mu",),
    FedAvgM: ("server_learning_rate", "server_momentum"),
    FedAdam: ("tau", "beta_1", "beta_2"),
    FedYogi: ("tau", "beta_1", "beta_2"),
    FedAdagrad: ("tau",),
    FedTrimmedAvg: ("beta",),
    Krum: ("num_malicious_nodes",),
    MultiKrum: ("num_malicious_nodes", "num_nodes_to_select"),
    Bulyan: ("num_malicious_nodes",),
    QFedAvg: ("q",),
}


def update_strategy(strategy: FedAvg, config: RunConfig) -> None:
    """A live change of the config (engine.app.server.between_rounds), into the strategy's own
    parameters: they decide the next round's messages and its aggregation."""
    strategy.min_train_nodes = strategy.min_available_nodes = config.required_replies
    for name in _LIVE.get(type(strategy), ()):
        setattr(strategy, name, getattr(config, name))
    if isinstance(strategy, (FedAdam, FedYogi, FedAdagrad)):
        strategy.eta, strategy.eta_l = server_eta(config.to_dict()), config.learning_rate
    if isinstance(strategy, QFedAvg):
        strategy.client_learning_rate = config.learning_rate


# The prefixes of what Flower's strategies keep between rounds, in a checkpoint: FedAvgM's
# momentum, FedOpt's first and second moments.
FLOWER_MOMENTUM = "flower_momentum."
FLOWER_MOMENTS = {"m_t": "flower_m_t.", "v_t": "flower_v_t."}


def strategy_state(strategy: FedAvg, names: list[str]) -> dict[str, torch.Tensor]:
    """What Flower's own strategy keeps between rounds, one array per trainable weight in
    `names`' order: FedAvgM's momentum (`aggregation = "flower"`), FedOpt's m_t and v_t.
    (QFedAvg keeps nothing: its global model is taken anew each round.)"""
    state: dict[str, torch.Tensor] = {}
    momentum = getattr(strategy, "momentum_vector", None)
    if momentum:
        state.update(
            {
                FLOWER_MOMENTUM + name: torch.from_numpy(array)
                for name, array in zip(names, momentum)
            }
        )
    for attribute, prefix in FLOWER_MOMENTS.items():
        moments = getattr(strategy, attribute, None)
        if moments:
            state.update({prefix + name: torch.from_numpy(moments[name]) for name in names})
    return state


def restore_strategy_state(
    strategy: FedAvg, state: dict[str, torch.Tensor], names: list[str]
) -> None:
    if isinstance(strategy, FedAvgM) and FLOWER_MOMENTUM + names[0] in state:
        strategy.momentum_vector = [state[FLOWER_MOMENTUM + name].numpy() for name in names]
    if isinstance(strategy, (FedAdam, FedYogi, FedAdagrad)):
        for attribute, prefix in FLOWER_MOMENTS.items():
            if prefix + names[0] in state:
                moments = {name: np.array(state[prefix + name].numpy()) for name in names}
                setattr(strategy, attribute, moments)
