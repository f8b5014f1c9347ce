"""Every strategy fedtui offers gives the global model Flower's own strategy object gives: the
same client replies (random tensors, uneven example counts, three rounds) through fedtui's
aggregation and through Flower's `configure_train` / `aggregate_train`."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
)
from flwr.serverapp import strategy as flower

from engine.app.server.aggregate_round import aggregate_round
from engine.app.server.aggregation import ServerMomentum
from engine.app.server.model_store import ModelStore
from engine.app.server.strategy import build_strategy, update_strategy
from engine.core.config_checks import config_from_dict
from engine.core.errors import ConfigError
from engine.core.live_config import with_changes
from engine.core.strategies import FLOWER_ETA, STRATEGIES
from tests.test_aggregation import reply

CLIENTS = 7  # Bulyan with one malicious node needs 4 x 1 + 3
EXAMPLES = [7, 30, 64, 101, 13, 50, 9]
SHAPES = {"layer.weight": (16, 8), "layer.bias": (16,), "head": (3, 4, 5)}
LEARNING_RATE = 0.05

# The config a strategy runs with, and Flower's own object for it, built here from Flower's
# classes (defaults left to Flower where the config keeps them).
CASES = {
    "fedprox": ({"proximal_mu": 0.3}, lambda: flower.FedProx(proximal_mu=0.3)),
    "fedavg": ({}, lambda: flower.FedAvg()),
    "fedavgm": (
        {"server_momentum": 0.7, "server_learning_rate": 0.5},
        lambda: flower.FedAvgM(server_momentum=0.7, server_learning_rate=0.5),
    ),
    "fedadam": ({}, lambda: flower.FedAdam()),
    "fedyogi": ({"tau": 1e-2}, lambda: flower.FedYogi(tau=1e-2)),
    "fedadagrad": ({"eta": 0.05}, lambda: flower.FedAdagrad(eta=0.05)),
    "fedmedian": ({}, lambda: flower.FedMedian()),
    "fedtrimmedavg": ({"beta": 0.3}, lambda: flower.FedTrimmedAvg(beta=0.3)),
    "krum": ({"num_malicious_nodes": 1}, lambda: flower.Krum(num_malicious_nodes=1)),
    "multikrum": (
        {"num_malicious_nodes": 1, "num_nodes_to_select": 3},
        lambda: flower.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3),
    ),
    "bulyan": ({"num_malicious_nodes": 1}, lambda: flower.Bulyan(num_malicious_nodes=1)),
    "qfedavg": (
        {"q": 0.5},
        lambda: flower.QFedAvg(
            client_learning_rate=LEARNING_RATE, q=0.5, train_loss_key="train-loss"
        ),
    ),
}


class Grid:
    def get_node_ids(self):
        return list(range(1, CLIENTS + 1))


class Weights(torch.nn.Module):
    def __init__(self, values: dict[str, np.ndarray]) -> None:
        super().__init__()
        for name, value in values.items():
            self.register_parameter(name.replace(".", "_"), torch.nn.Parameter(torch.tensor(value)))

    def as_numpy(self) -> dict[str, np.ndarray]:
        return {name: p.detach().numpy().copy() for name, p in self.named_parameters()}


def client_replies(rng: np.random.Generator, global_model: dict[str, np.ndarray]) -> list[tuple]:
    """Each client's (weights, examples, train loss): near the global model, some far off."""
    replies = []
    for client, examples in enumerate(EXAMPLES):
        spread = 0.5 if client == 3 else 0.05  # one outlier for the robust strategies to drop
        weights = {
            name: (value + rng.normal(0.0, spread, value.shape)).astype(np.float32)
            for name, value in global_model.items()
        }
        replies.append((weights, examples, float(rng.uniform(0.5, 3.0))))
    return replies


def as_messages(replies: list[tuple]) -> list[Message]:
    return [
        reply(weights, examples, node, train_loss=loss)
        for node, (weights, examples, loss) in enumerate(replies, start=1)
    ]


def fedtui_config(name: str, aggregation: str):
    values = {
        "strategy": name,
        "num_clients": CLIENTS,
        "learning_rate": LEARNING_RATE,
        "aggregation": aggregation,
    }
    return config_from_dict({**values, **CASES[name][0]})


@pytest.mark.usefixtures("serverapp_identity")
@pytest.mark.parametrize("aggregation", ["streaming", "flower"])
@pytest.mark.parametrize(
    "name", [name for name in STRATEGIES if name != "scaffold"]
)  # Flower has none
def test_three_rounds_give_flowers_global_model(name, aggregation):
    rng = np.random.default_rng(30)
    start = {
        name.replace(".", "_"): rng.normal(0.0, 1.0, shape).astype(np.float32)
        for name, shape in SHAPES.items()
    }
    config = fedtui_config(name, aggregation)
    ours, model = build_strategy(config), Weights(start)
    momentum = (
        ServerMomentum(config.server_learning_rate, config.server_momentum)
        if name == "fedavgm"
        else None
    )
    theirs, flower_model = CASES[name][1](), dict(start)
    for server_round in (1, 2, 3):
        replies = client_replies(rng, flower_model)
        # fedtui's messages may carry no arrays (shared memory): it gives Flower its own.
        ours.configure_train(server_round, ArrayRecord(), ConfigRecord(), Grid())
        aggregate_round(ours, config, server_round, as_messages(replies), model, momentum)
        arrays = ArrayRecord({k: Array(v) for k, v in flower_model.items()})
        theirs.configure_train(server_round, arrays, ConfigRecord(), Grid())
        aggregated, _ = theirs.aggregate_train(server_round, as_messages(replies))
        flower_model = {k: a.numpy().astype(np.float32) for k, a in aggregated.items()}
    for key, value in model.as_numpy().items():
        assert np.abs(value - flower_model[key]).max() <= 1e-6, key
        assert np.abs(value - start[key]).max() > 1e-3  # the model did move


def test_the_config_defaults_are_flowers():
    """The strategy keys' defaults are those of Flower's signatures (eta: per strategy)."""
    defaults = fedtui_config("fedavg", "streaming")
    signatures = {
        flower.FedAdam: ("beta_1", "beta_2", "tau"),
        flower.FedYogi: ("beta_1", "beta_2", "tau"),
        flower.FedAdagrad: ("tau",),
        flower.FedTrimmedAvg: ("beta",),
        flower.MultiKrum: ("num_malicious_nodes", "num_nodes_to_select"),
        flower.Bulyan: ("num_malicious_nodes",),
        flower.QFedAvg: ("q",),
    }
    for cls, keys in signatures.items():
        parameters = inspect.signature(cls).parameters
        for key in keys:
            assert getattr(defaults, key) == parameters[key].default, (cls.__name__, key)
    for name, eta in FLOWER_ETA.items():
        cls = {"fedadam": flower.FedAdam, "fedyogi": flower.FedYogi}.get(name, flower.FedAdagrad)
        assert inspect.signature(cls).parameters["eta"].default == eta


@pytest.mark.usefixtures("serverapp_identity")
@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_a_fedopt_run_resumed_from_a_checkpoint_goes_on_as_if_it_never_stopped(tmp_path, name):
    """The moments m_t and v_t travel in the round's checkpoint: rounds 3 and 4 after a restore
    give the very model (and moments) the uninterrupted run gives."""
    rng = np.random.default_rng(4)
    start = {
        k.replace(".", "_"): rng.normal(0.0, 1.0, s).astype(np.float32) for k, s in SHAPES.items()
    }
    replies = [client_replies(rng, start) for _ in range(4)]
    config = fedtui_config(name, "streaming")

    def train(strategy, model, rounds, replies):
        for server_round in rounds:
            strategy.configure_train(server_round, ArrayRecord(), ConfigRecord(), Grid())
            messages = as_messages(replies[server_round - 1])
            aggregate_round(strategy, config, server_round, messages, model, None)

    whole, whole_model = build_strategy(config), Weights(start)
    train(whole, whole_model, (1, 2, 3, 4), replies)

    half, half_model = build_strategy(config), Weights(start)
    train(half, half_model, (1, 2), replies)
    ModelStore(tmp_path, half_model, None, half, None).save(2, 1.0, False, None)
    resumed, resumed_model = build_strategy(config), Weights({k: v * 0 for k, v in start.items()})
    ModelStore(tmp_path, resumed_model, None, resumed, None).restore(tmp_path / "last", 2)
    train(resumed, resumed_model, (3, 4), replies)

    for key, value in whole_model.as_numpy().items():
        assert np.array_equal(value, resumed_model.as_numpy()[key]), key
    for moments in ("m_t", "v_t"):
        for key, value in getattr(whole, moments).items():
            assert np.array_equal(value, getattr(resumed, moments)[key]), (moments, key)


def test_live_changes_reach_flowers_strategy_object_and_are_checked_as_at_start():
    yogi = fedtui_config("fedyogi", "streaming")
    strategy = build_strategy(yogi)
    update_strategy(strategy, with_changes(yogi, {"eta": 0.5, "beta_1": 0.5, "tau": 0.1})[0])
    assert (strategy.eta, strategy.beta_1, strategy.tau) == (0.5, 0.5, 0.1)

    adagrad = fedtui_config("fedadagrad", "streaming")
    strategy = build_strategy(adagrad)
    update_strategy(strategy, with_changes(adagrad, {"beta_1": 0.5, "eta": 0.0})[0])
    assert (strategy.beta_1, strategy.eta) == (0.0, FLOWER_ETA["fedadagrad"])  # Flower's own

    bulyan = fedtui_config("bulyan", "streaming")
    with pytest.raises(ConfigError, match="needs at least 11 replies a round"):
        with_changes(bulyan, {"num_malicious_nodes": 2})
