"""SCAFFOLD (Karimireddy et al. 2020, option II): the clients' corrected steps and variates
(engine.ml.control_variates) and the server's variates and update (engine.app.server.scaffold,
through fedtui's round aggregation), against the paper's equations and on a problem where
FedAvg drifts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from engine.app.server.aggregate_round import aggregate_round, server_step
from engine.app.server.model_store import ModelStore
from engine.app.server.scaffold import ControlVariates
from engine.app.server.strategy import build_strategy
from engine.app.transfer import CORRECTION_RECORD, VARIATE_RECORD, tensor_view, tensors_to_arrays
from engine.core.config_checks import config_from_dict
from engine.ml.control_variates import apply_correction, new_control_variate
from tests.test_aggregation import reply

pytestmark = pytest.mark.usefixtures("serverapp_identity")

# Four clients' quadratics f_i(x) = a_i / 2 * ||x - b_i||^2: the federation's optimum weighs
# each b_i by its curvature a_i, while FedAvg's local steps settle each client near its own b_i
# whatever a_i is, so FedAvg's fixed point lies elsewhere (client drift).
CURVATURE = np.array([1.0, 2.0, 4.0, 8.0])
CENTRES = np.array([[4.0, -2.0], [-1.0, 3.0], [2.0, 2.0], [-3.0, -1.0]])
OPTIMUM = (CURVATURE[:, None] * CENTRES).sum(axis=0) / CURVATURE.sum()
LOCAL_STEPS, LEARNING_RATE = 10, 0.1


class Point(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.x = torch.nn.Parameter(torch.zeros(2))


class Nodes:
    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes


def values(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return {name: tensor_view(array).clone() for name, array in record.items()}


def local_training(client: int, start: torch.Tensor, correction: torch.Tensor | None):
    """LOCAL_STEPS of SGD on client `client`'s quadratic, corrected as fedtui's train() does;
    its trained point and, with a correction, its new control variate."""
    point = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.SGD([point], lr=LEARNING_RATE)
    centre = torch.tensor(CENTRES[client], dtype=torch.float32)
    for _ in range(LOCAL_STEPS):
        optimizer.zero_grad()
        (CURVATURE[client] / 2 * ((point - centre) ** 2).sum()).backward()
        optimizer.step()
        if correction is not None:
            apply_correction([point], [correction], LEARNING_RATE)
    if correction is None:
        return point.detach(), None
    (variate,) = new_control_variate(
        [start], [point.detach()], [correction], LOCAL_STEPS, LEARNING_RATE
    )
    return point.detach(), variate


def federated(strategy: str, rounds: range, sampled=lambda server_round: range(4), store=None):
    """`rounds` of the four clients (those `sampled` each round) through fedtui's round
    aggregation, from the model and strategy state `store`'s checkpoint holds after the round
    before the first (if given); the distance of the global model from the optimum after each
    round, and the ModelStore that holds the model and the server's variates."""
    per_round = len(list(sampled(1)))
    config = config_from_dict(
        {"strategy": strategy, "num_clients": 4, "clients_per_round": per_round % 4}
    )
    model, flower = Point(), build_strategy(config)
    step = server_step(config)
    variates = ControlVariates({"x": model.x}, 4, "fp32") if strategy == "scaffold" else None
    kept = ModelStore(store, model, None, flower, step, variates)
    if rounds.start > 1:
        kept.restore(store / "last", rounds.start - 1)
    distances = []
    for server_round in rounds:
        clients = list(sampled(server_round))
        nodes = Nodes([100 + client for client in clients])
        messages = list(flower.configure_train(server_round, ArrayRecord(), ConfigRecord(), nodes))
        if variates is not None:
            messages, _ = variates.with_corrections(messages, {100 + c: c for c in clients}, None)
        replies = []  # in the order of their clients (Flower draws the messages' order)
        for message in sorted(messages, key=lambda message: message.metadata.dst_node_id):
            client = message.metadata.dst_node_id - 100
            record = message.content.array_records.get(CORRECTION_RECORD)
            correction = values(record)["x"] if record is not None else None
            trained, variate = local_training(client, model.x.detach(), correction)
            answer = reply({"x": trained.numpy()}, 10, message.metadata.dst_node_id)
            answer.content.metric_records["metrics"]["partition-id"] = client
            if variate is not None:
                answer.content[VARIATE_RECORD] = tensors_to_arrays({"x": variate}, "fp32")
            replies.append(answer)
        aggregate_round(flower, config, server_round, replies, model, step, variates)
        distances.append(float(np.linalg.norm(model.x.detach().numpy() - OPTIMUM)))
        kept.save(server_round, distances[-1], False, None)  # with a `store` only
    return distances, kept


def test_scaffold_reaches_the_optimum_that_fedavg_drifts_away_from():
    fedavg, _ = federated("fedavg", range(1, 61))
    scaffold, store = federated("scaffold", range(1, 61))
    assert min(fedavg[-10:]) > 0.5  # FedAvg has settled, far from the optimum
    assert max(scaffold[-10:]) < 1e-3
    # c is the mean of the clients' gradients at the optimum (c_i -> grad f_i), which is 0
    assert torch.linalg.norm(store.variates.server["x"]) < 1e-3


def test_scaffold_reaches_it_with_half_the_clients_sampled_each_round():
    def halves(server_round):
        return (0, 1) if server_round % 2 else (2, 3)

    fedavg, _ = federated("fedavg", range(1, 201), halves)
    scaffold, store = federated("scaffold", range(1, 201), halves)
    assert min(fedavg[-10:]) > 0.4  # it swings between each half's own fixed point
    assert max(scaffold[-10:]) < 1e-3
    assert sorted(store.variates.clients) == [0, 1, 2, 3]


def test_the_variates_follow_the_papers_equations_on_a_hand_computed_case():
    # Client side: c_i = [0.3, 0], c = [0.4, -0.2], so the correction c - c_i = [0.1, -0.2].
    start, correction = torch.tensor([1.0, 2.0]), torch.tensor([0.1, -0.2])
    params = [torch.tensor([1.0, 1.0])]
    apply_correction(params, [correction], 0.1)  # y <- y - lr * (c - c_i)
    assert torch.allclose(params[0], torch.tensor([0.99, 1.02]))
    # c_i+ = c_i - c + (x - y) / (K lr) = [0.3 - 0.4 + 0.5/0.5, 0 + 0.2 - 0.5/0.5]
    (variate,) = new_control_variate([start], [torch.tensor([0.5, 2.5])], [correction], 5, 0.1)
    assert torch.allclose(variate, torch.tensor([0.9, -0.8]))

    # Server side, N = 4: clients 0 and 1 answer round 1, client 0 round 2.
    variates = ControlVariates({"w": torch.zeros(2)}, 4, "fp32")

    def round_of(answers: dict[int, list[float]]) -> None:
        replies = []
        for client, values_ in answers.items():
            answer = reply({"w": np.zeros(2, np.float32)}, 1, 100 + client)
            answer.content.metric_records["metrics"]["partition-id"] = client
            variate = torch.tensor(values_)
            answer.content[VARIATE_RECORD] = tensors_to_arrays({"w": variate}, "fp32")
            replies.append(answer)
        list(variates.taking_variates(replies))
        variates.finish_round()

    round_of({0: [0.8, -0.4], 1: [0.4, 0.4]})
    # c = 0 + (1/4) * ((0.8, -0.4) - 0 + (0.4, 0.4) - 0)
    assert torch.allclose(variates.server["w"], torch.tensor([0.3, 0.0]))
    messages = [
        Message(RecordDict({"config": ConfigRecord()}), dst_node_id=node, message_type="train")
        for node in (100, 102)
    ]
    sent, size = variates.with_corrections(messages, {100: 0, 102: 2}, None)
    corrections = [values(m.content.array_records[CORRECTION_RECORD])["w"] for m in sent]
    assert torch.allclose(corrections[0], torch.tensor([-0.5, 0.4]))  # c - c_0
    assert torch.allclose(corrections[1], torch.tensor([0.3, 0.0]))  # c - c_2, c_2 still 0
    assert size == sum(m.content.array_records[CORRECTION_RECORD].count_bytes() for m in sent)
    round_of({0: [1.2, 0.0]})
    # c = (0.3, 0) + (1/4) * ((1.2, 0) - (0.8, -0.4))
    assert torch.allclose(variates.server["w"], torch.tensor([0.4, 0.1]))
    assert torch.equal(variates.clients[1]["w"], torch.tensor([0.4, 0.4]))


def test_a_run_resumed_from_a_checkpoint_goes_on_as_if_it_never_stopped(tmp_path):
    """c and every c_i travel in the round's checkpoint: rounds 3 to 5 after a restore (half the
    clients a round, so some c_i are older than the last round) give the very model and
    variates the uninterrupted run gives."""

    def halves(server_round):
        return (0, 1) if server_round % 2 else (2, 3)

    whole_distances, whole = federated("scaffold", range(1, 6), halves)
    federated("scaffold", range(1, 3), halves, store=tmp_path)
    resumed_distances, resumed = federated("scaffold", range(3, 6), halves, store=tmp_path)
    assert resumed_distances == whole_distances[2:]
    assert torch.equal(resumed.model.x, whole.model.x)
    assert torch.equal(resumed.variates.server["x"], whole.variates.server["x"])
    for client in range(4):
        assert torch.equal(
            resumed.variates.clients[client]["x"], whole.variates.clients[client]["x"]
        )
