"""The global model saved each round with what the strategy keeps between rounds, and restored
exactly (engine.app.server.model_store): what makes a resumed run or a fork go on as the run
itself would have."""

import numpy as np
import pytest
import torch
from flwr.serverapp.strategy import FedAvg, FedAvgM

from engine.app.server.aggregation import ServerMomentum
from engine.app.server.model_store import ModelStore
from engine.record import checkpoints


def tiny_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))


def momentum_after_a_step(model):
    momentum = ServerMomentum(learning_rate=1.0, momentum=0.9)
    weights = dict(model.named_parameters())
    momentum.remember(weights)
    with torch.no_grad():
        for tensor in weights.values():
            tensor.add_(0.5)  # "the mean of the replies"
    momentum.step(weights)
    return momentum


def test_a_round_comes_back_with_its_weights_and_fedavgms_momentum(tmp_path):
    model = tiny_model(0)
    momentum = momentum_after_a_step(model)
    ModelStore(tmp_path, model, None, FedAvg(), momentum).save(3, 1.5, best=False, keep=None)

    fresh, restored = tiny_model(1), ServerMomentum(learning_rate=1.0, momentum=0.9)
    ModelStore(tmp_path, fresh, None, FedAvg(), restored).restore(tmp_path / "last", 3)

    for (name, before), after in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(before, after), name
    assert restored.state().keys() == momentum.state().keys() and momentum.state()
    for name, velocity in momentum.state().items():
        assert torch.equal(restored.state()[name], velocity)


def test_flowers_own_fedavgm_gets_its_momentum_back(tmp_path):
    model, strategy = tiny_model(0), FedAvgM()
    strategy.momentum_vector = [
        np.full(p.shape, i, np.float32) for i, p in enumerate(model.parameters())
    ]
    ModelStore(tmp_path, model, None, strategy, None).save(2, 1.0, best=False, keep=None)

    restored = FedAvgM()
    ModelStore(tmp_path, tiny_model(1), None, restored, None).restore(tmp_path / "round-0002", 2)

    for before, after in zip(strategy.momentum_vector, restored.momentum_vector):
        assert np.array_equal(before, after)


def test_best_last_keeps_the_last_and_the_best_round_only(tmp_path):
    store = ModelStore(tmp_path, tiny_model(0), None, FedAvg(), None)
    for number in range(4):
        store.save(number, 1.0, best=False, keep=[number, 1])
    assert list(checkpoints.saved_rounds(tmp_path)) == [1, 3]


def test_a_checkpoint_of_another_round_is_refused(tmp_path):
    store = ModelStore(tmp_path, tiny_model(0), None, FedAvg(), None)
    store.save(2, 1.0, best=False, keep=None)
    with pytest.raises(RuntimeError, match="does not hold the global model of round 3"):
        store.restore(tmp_path / "last", 3)
