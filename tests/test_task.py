import numpy as np
import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from engine.ml import task
from engine.ml.samples import Samples


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return OPTForCausalLM(
        OPTConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            ffn_dim=32,
            num_attention_heads=2,
            word_embed_proj_dim=16,
            max_position_embeddings=32,
            dropout=0.0,
        )
    )


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

    model(**batch).loss.backward()
    task.add_proximal_gradient(params, global_params, mu)
    plain = torch.autograd.grad(model(**batch).loss, params)

    for w, w_global, g_plain in zip(params, global_params, plain):
        torch.testing.assert_close(
            w.grad - g_plain, mu * (w.detach() - w_global), atol=1e-6, rtol=1e-5
        )


def train_copy(samples, **options):
    model = tiny_model()
    defaults = dict(
        epochs=1, batch_size=4, learning_rate=1e-2, mu=0.1, device=torch.device("cpu"), seed=0
    )
    task.train(model, samples, **{**defaults, **options})
    return model


def test_accumulating_two_half_batches_steps_like_one_whole_batch():
    samples = fixed_samples(rows=8)
    samples.mask[:] = 1  # equal tokens per row: the mean of the halves is the whole's mean
    whole = train_copy(samples, batch_size=8)
    halves = train_copy(samples, batch_size=4, grad_accum_steps=2)
    apart = train_copy(samples, batch_size=4)  # two optimizer steps: visibly elsewhere
    for a, b in zip(whole.parameters(), halves.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert max((a - c).abs().max() for a, c in zip(whole.parameters(), apart.parameters())) > 1e-3


def test_gradient_checkpointing_changes_memory_not_results():
    samples = fixed_samples(rows=8)
    plain = train_copy(samples)
    checkpointed = train_copy(samples, precision=task.Precision(gradient_checkpointing=True))
    for a, b in zip(plain.parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert not any(
        getattr(module, "gradient_checkpointing", False)  # switched off after
        for module in checkpointed.modules()
    )


@pytest.mark.parametrize("compute", ["bf16", "fp16"])
def test_mixed_precision_trains_fp32_weights_close_to_fp32_compute(compute):
    samples = fixed_samples(rows=16)
    fp32 = train_copy(samples, epochs=3)
    mixed = train_copy(samples, epochs=3, precision=task.Precision(compute=compute))
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    cpu = torch.device("cpu")
    losses = [task.evaluate(m, samples, batch_size=8, device=cpu) for m in (fp32, mixed)]
    assert losses[1] == pytest.approx(losses[0], rel=0.02)
    assert losses[1] < task.evaluate(tiny_model(), samples, batch_size=8, device=cpu) - 0.3


def test_local_training_lowers_the_loss_on_its_data_and_reports_every_step():
    samples = fixed_samples(rows=16)
    model = tiny_model()
    before = task.evaluate(model, samples, batch_size=8, device=torch.device("cpu"))
    steps = []
    result = task.train(
        model,
        samples,
        epochs=3,
        batch_size=4,
        learning_rate=1e-2,
        mu=0.1,
        device=torch.device("cpu"),
        seed=0,
        on_step=lambda step, total, loss: steps.append((step, total)),
    )
    after = task.evaluate(model, samples, batch_size=8, device=torch.device("cpu"))
    assert after < before - 0.3
    assert (result.examples, result.steps) == (16, 12)
    assert result.tokens == 3 * (16 * 12 - 3)  # every epoch's real tokens, not the padding
    assert steps == [(step, 12) for step in range(1, 13)]


def test_evaluation_is_the_token_weighted_mean_over_batches():
    samples = fixed_samples(rows=6)
    model = tiny_model()
    whole = task.evaluate(model, samples, batch_size=6, device=torch.device("cpu"))
    batched = task.evaluate(model, samples, batch_size=4, device=torch.device("cpu"))
    assert batched == pytest.approx(whole, rel=1e-5)
