"""Streaming aggregation gives what Flower's own strategies give, one reply at a time."""

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp.strategy import FedAvg, FedAvgM

from engine.app.server.aggregation import ServerMomentum, WeightedMean
from engine.app.server.strategy import build_strategy
from engine.core.config import RunConfig


def reply(weights, examples, node, train_loss=1.0):
    content = RecordDict(
        {
            "arrays": ArrayRecord(
                {
                    name: Array(np.asarray(values, dtype=np.float32))
                    for name, values in weights.items()
                }
            ),
            "metrics": MetricRecord({"train-loss": train_loss, "num-examples": examples}),
        }
    )
    return Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN)


ROUNDS = [  # two rounds of three clients' replies: (weights, examples)
    [
        ({"a": [1.0, 0.0], "b": [[2.0]]}, 10),
        ({"a": [4.0, 3.0], "b": [[-1.0]]}, 30),
        ({"a": [0.0, 6.0], "b": [[0.5]]}, 60),
    ],
    [
        ({"a": [2.0, 1.0], "b": [[1.0]]}, 20),
        ({"a": [-3.0, 3.0], "b": [[0.0]]}, 20),
        ({"a": [1.0, 1.0], "b": [[4.0]]}, 40),
    ],
]


def streamed(initial, strategy):
    weights = {name: torch.tensor(values, dtype=torch.float32) for name, values in initial.items()}
    momentum = ServerMomentum(1.5, 0.9) if strategy == "fedavgm" else None
    for replies in ROUNDS:
        if momentum:
            momentum.remember(weights)
        mean = WeightedMean(weights)
        for node, (values, examples) in enumerate(replies):
            mean.add(reply(values, examples, node).content["arrays"], examples)
        mean.finish()
        if momentum:
            momentum.step(weights)
    return {name: tensor.numpy() for name, tensor in weights.items()}


def by_flower(initial, strategy):
    flower = (
        FedAvgM(server_learning_rate=1.5, server_momentum=0.9)
        if strategy == "fedavgm"
        else FedAvg()
    )
    arrays = ArrayRecord(
        {name: Array(np.asarray(values, dtype=np.float32)) for name, values in initial.items()}
    )
    flower.current_arrays = arrays if strategy == "fedavgm" else None
    for number, replies in enumerate(ROUNDS, start=1):
        arrays, _ = flower.aggregate_train(
            number,
            [reply(values, examples, node) for node, (values, examples) in enumerate(replies)],
        )
    return {name: array.numpy() for name, array in arrays.items()}


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm"])
def test_streaming_aggregation_equals_flowers_over_two_rounds(strategy, serverapp_identity):
    initial = {"a": [0.5, 0.5], "b": [[1.0]]}
    ours, theirs = streamed(initial, strategy), by_flower(initial, strategy)
    for name in initial:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, atol=1e-6)


def test_the_mean_is_example_weighted_and_accepts_fp16_replies():
    weights = {"w": torch.full((2,), 99.0)}  # the previous global model plays no part
    mean = WeightedMean(weights)
    mean.add(ArrayRecord({"w": Array(np.array([1.0, 0.0], np.float32))}), 10)
    mean.add(ArrayRecord({"w": Array(np.array([4.0, 2.0], np.float16))}), 30)
    mean.finish()
    torch.testing.assert_close(weights["w"], torch.tensor([(10 + 120) / 40, 60 / 40]))


def test_each_reply_is_released_once_folded_in():
    mean = WeightedMean({"w": torch.zeros(3)})
    arrays = ArrayRecord({"w": Array(np.ones(3, np.float32))})
    mean.add(arrays, 1)
    assert len(arrays) == 0


def test_a_reply_for_another_model_is_refused():
    mean = WeightedMean({"w": torch.zeros(3)})
    with pytest.raises(ValueError, match="do not fit the model: missing \\['w'\\]"):
        mean.add(ArrayRecord({"other": Array(np.ones(3, np.float32))}), 1)


def test_fedprox_sends_its_mu_to_clients(serverapp_identity):
    config = RunConfig(strategy="fedprox", proximal_mu=0.25, num_clients=1)

    class OneNodeGrid:
        def get_node_ids(self):
            return [7]

    (message,) = build_strategy(config).configure_train(
        1, ArrayRecord({"w": Array(np.zeros(2, np.float32))}), ConfigRecord(), OneNodeGrid()
    )
    assert message.content["config"]["proximal-mu"] == 0.25
