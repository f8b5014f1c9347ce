import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from transformers import OPTConfig, OPTForCausalLM

from engine.config import RunConfig
from engine.data import Samples
from engine.flower import task
from engine.flower.server_app import build_strategy


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                    ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16,
                                    max_position_embeddings=32, dropout=0.0))


def fixed_samples(rows=8, seq_len=12, seed=0):
    ids = np.random.default_rng(seed).integers(4, 50, size=(rows, seq_len)).astype(np.int32)
    mask = np.ones_like(ids, dtype=np.int8)
    mask[-1, -3:] = 0
    return Samples(ids, mask)


@pytest.mark.parametrize("mu", [0.01, 0.1, 1.0])
def test_proximal_term_adds_mu_times_distance_to_the_global_model_to_the_gradient(mu):
    model = tiny_model()
    global_params = [p.detach().clone() for p in task.trainable(model)]
    with torch.no_grad():  # the client has moved away from the global model
        for param in task.trainable(model):
            param.add_(0.05 * torch.randn_like(param))
    batch = next(task.batches(fixed_samples(), 4))
    params = task.trainable(model)

    objective, _ = task.training_loss(model, batch, global_params, mu)
    with_prox = torch.autograd.grad(objective, params)
    plain = torch.autograd.grad(model(**batch).loss, params)

    for w, w_global, g_prox, g_plain in zip(params, global_params, with_prox, plain):
        torch.testing.assert_close(g_prox - g_plain, mu * (w.detach() - w_global),
                                   atol=1e-6, rtol=1e-5)


def test_reported_training_loss_excludes_the_proximal_term():
    model = tiny_model()
    global_params = [p.detach().clone() + 1.0 for p in task.trainable(model)]
    batch = next(task.batches(fixed_samples(), 4))
    objective, reported = task.training_loss(model, batch, global_params, mu=0.5)
    assert reported == pytest.approx(model(**batch).loss.item())
    assert objective.item() > reported + 1.0


def test_local_training_lowers_the_loss_on_its_data_and_reports_every_step():
    samples = fixed_samples(rows=16)
    model = tiny_model()
    before = task.evaluate(model, samples, batch_size=8, device=torch.device("cpu"))
    steps = []
    result = task.train(model, samples, epochs=3, batch_size=4, learning_rate=1e-2, mu=0.1,
                        device=torch.device("cpu"), seed=0,
                        on_step=lambda step, total, loss: steps.append((step, total)))
    after = task.evaluate(model, samples, batch_size=8, device=torch.device("cpu"))
    assert after < before - 0.3
    assert (result.examples, result.steps) == (16, 12)
    assert steps == [(step, 12) for step in range(1, 13)]


def test_evaluation_is_the_token_weighted_mean_over_batches():
    samples = fixed_samples(rows=6)
    model = tiny_model()
    whole = task.evaluate(model, samples, batch_size=6, device=torch.device("cpu"))
    batched = task.evaluate(model, samples, batch_size=4, device=torch.device("cpu"))
    assert batched == pytest.approx(whole, rel=1e-5)


@pytest.fixture
def serverapp_identity():
    """Messages are built inside a ServerApp process, which knows its run, node and task."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None


def reply(weights, train_loss, examples, node):
    content = RecordDict({
        "arrays": ArrayRecord({"w": Array(np.asarray(weights, dtype=np.float32))}),
        "metrics": MetricRecord({"train-loss": train_loss, "num-examples": examples,
                                 "partition-id": node, "steps": 1, "train-seconds": 1.0,
                                 "peak-rss-bytes": 1}),
    })
    return Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN)


@pytest.mark.parametrize("strategy", ["fedprox", "fedavg"])
def test_aggregation_is_the_example_weighted_mean(strategy, serverapp_identity):
    config = RunConfig(strategy=strategy, num_clients=3)
    replies = [reply([1.0, 0.0], 2.0, 10, 1), reply([4.0, 3.0], 5.0, 30, 2),
               reply([0.0, 6.0], 8.0, 60, 3)]
    arrays, metrics = build_strategy(config).aggregate_train(1, replies)
    np.testing.assert_allclose(arrays["w"].numpy(),
                               [(1 * 10 + 4 * 30 + 0 * 60) / 100, (0 * 10 + 3 * 30 + 6 * 60) / 100],
                               rtol=1e-6)
    assert metrics["train-loss"] == pytest.approx((2 * 10 + 5 * 30 + 8 * 60) / 100)


def test_fedprox_sends_its_mu_to_clients(serverapp_identity):
    config = RunConfig(strategy="fedprox", proximal_mu=0.25, num_clients=1)

    class OneNodeGrid:
        def get_node_ids(self):
            return [7]

    from flwr.app import ConfigRecord
    (message,) = build_strategy(config).configure_train(
        1, ArrayRecord({"w": Array(np.zeros(2, np.float32))}), ConfigRecord(), OneNodeGrid())
    assert message.content["config"]["proximal-mu"] == 0.25
