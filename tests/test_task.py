import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
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


TRAINING = dict(
    epochs=1, batch_size=4, learning_rate=1e-2, mu=0.1, device=torch.device("cpu"), seed=0
)


def train_copy(samples, **options):
    model = tiny_model()
    task.train(model, samples, **{**TRAINING, **options})
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


# -- local_steps --------------------------------------------------------------------------------


@pytest.fixture
def optimizer_steps():
    """Counts every optimizer step taken while the test runs."""
    taken = []
    handle = register_optimizer_step_post_hook(
        lambda optimizer, args, kwargs: taken.append(optimizer)
    )
    yield taken
    handle.remove()


@pytest.mark.parametrize("grad_accum_steps", [1, 2, 3])
def test_local_steps_take_exactly_that_many_optimizer_steps(grad_accum_steps, optimizer_steps):
    reported = []
    result = task.train(
        tiny_model(),
        fixed_samples(rows=8),  # two batches of 4 a pass
        **TRAINING,
        grad_accum_steps=grad_accum_steps,
        on_step=lambda step, total, loss: reported.append((step, total)),
        local_steps=5,
    )
    batches = 5 * grad_accum_steps
    assert len(optimizer_steps) == result.optimizer_steps == 5
    assert result.steps == batches
    assert reported == [(step, batches) for step in range(1, batches + 1)]
    assert result.examples == 8  # the client's samples, FedAvg's weight, however often trained


def test_local_steps_cycle_through_fewer_samples_reshuffling_each_pass():
    samples = fixed_samples(rows=3)
    samples.mask[:] = 1
    model = tiny_model()
    trained_rows = []

    def record_rows(module, args, kwargs):
        for ids in kwargs["input_ids"].numpy():
            trained_rows.append(next(i for i, row in enumerate(samples.ids) if (row == ids).all()))

    model.register_forward_pre_hook(record_rows, with_kwargs=True)
    result = task.train(model, samples, **{**TRAINING, "batch_size": 2, "seed": 7}, local_steps=5)
    # five batches of passes of 3 samples in 2 batches each: 2 + 1, 2 + 1, 2
    passes = [np.random.default_rng(7 * 1_000 + number).permutation(3) for number in range(3)]
    assert len({tuple(order) for order in passes}) > 1  # each pass in its own order
    assert trained_rows == list(np.concatenate(passes))[:8]
    assert (result.steps, result.optimizer_steps) == (5, 5)
    assert result.tokens == 8 * 12


def test_local_steps_covering_one_epoch_train_exactly_as_one_epoch():
    samples = fixed_samples(rows=8)
    by_epoch = train_copy(samples, epochs=1, batch_size=4)
    by_steps = train_copy(samples, epochs=1, batch_size=4, local_steps=2)
    for a, b in zip(by_epoch.parameters(), by_steps.parameters()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# -- what is learned ----------------------------------------------------------------------------


def completion_samples(rows=4, seq_len=12, prompt_tokens=5):
    """Samples whose first `prompt_tokens` tokens are a prompt (not learned); the last row ends
    in three padding tokens."""
    samples = fixed_samples(rows=rows, seq_len=seq_len)
    samples.labels_mask = samples.mask.copy()
    samples.labels_mask[:, :prompt_tokens] = 0
    return samples


def test_labels_are_minus_100_on_the_prompt_and_the_padding():
    samples = completion_samples()
    samples.labels_mask[-1, -3:] = 1  # a labels_mask that forgets padding does not learn it
    labels = next(task.batches(samples, 4))["labels"]
    learned = labels != -100
    assert not learned[:, :5].any()
    assert learned[:3, 5:].all()
    assert learned[3].tolist() == [False] * 5 + [True] * 4 + [False] * 3
    torch.testing.assert_close(
        labels[learned], torch.from_numpy(samples.ids.astype(np.int64))[learned]
    )


def test_evaluation_scores_only_the_learned_tokens():
    samples = completion_samples()
    model = tiny_model()
    batch = next(task.batches(samples, 4))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    predicted, targets = logits[:, :-1], batch["labels"][:, 1:]
    expected = torch.nn.functional.cross_entropy(
        predicted.reshape(-1, predicted.shape[-1]), targets.reshape(-1), ignore_index=-100
    )
    evaluated = task.evaluate(model, samples, batch_size=2, device=torch.device("cpu"))
    assert evaluated == pytest.approx(expected.item(), rel=1e-5)
    assert evaluated != pytest.approx(
        task.evaluate(model, fixed_samples(rows=4), batch_size=2, device=torch.device("cpu"))
    )


def test_a_batch_whose_completions_were_cut_teaches_nothing_and_breaks_nothing(optimizer_steps):
    samples = completion_samples(rows=8)
    second_batch = np.random.default_rng(0).permutation(8)[4:]  # epoch 0's order, seed 0
    samples.labels_mask[second_batch] = 0  # every completion there cut at seq_len
    model = tiny_model()
    losses = []
    result = task.train(
        model,
        samples,
        **TRAINING,
        on_step=lambda step, total, loss: losses.append(loss()),
    )
    assert np.isfinite(losses[0]) and np.isnan(losses[1])  # the second batch: no loss at all
    assert (result.steps, result.optimizer_steps, len(optimizer_steps)) == (2, 1, 1)
    assert result.train_loss == losses[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    cpu = torch.device("cpu")
    assert np.isfinite(task.evaluate(model, samples, batch_size=4, device=cpu))
