"""Training and evaluation of a causal LM: local training with FedProx's proximal term and the
token-weighted mean loss used for central evaluation. Both learn (and score) only the tokens a
sample's labels_mask marks, when it has one (engine.ml.samples)."""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from engine.ml import control_variates, model as models
from engine.ml.samples import Samples

# step, steps_total, and the step's loss: reading it waits for the device (a host sync), so a
# callback reads it only when it shows it
StepCallback = Callable[[int, int, Callable[[], float]], None]


@dataclass
class TrainResult:
    train_loss: float  # mean language-model loss over the steps that learned (no proximal term)
    examples: int  # the client's samples (FedAvg's weight), however often they were trained on
    tokens: int  # real (not padding) tokens trained on, each pass over a sample counted
    steps: int  # batches
    optimizer_steps: int
    seconds: float


def local_seed(run_seed: int, client: int, server_round: int) -> int:
    """The seed of one client's local training in one round: distinct per client and round,
    the same wherever that training runs (a ClientApp, a worker, a plain-loop benchmark)."""
    return (run_seed * 1_000 + client) * 1_000 + server_round


def batches(
    samples: Samples, batch_size: int, *, shuffle_seed: int | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """`samples` in batches (in order, or shuffled by `shuffle_seed`) as a causal LM takes them:
    labels are the ids where a token is learned, -100 elsewhere (padding; the prompt, with
    loss_on=completion)."""
    order = np.arange(len(samples))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(samples))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        real = samples.mask[rows]
        # padding is never learned, whatever a labels_mask says
        learned = real if samples.labels_mask is None else real * samples.labels_mask[rows]
        ids = torch.from_numpy(samples.ids[rows].astype(np.int64))
        mask = torch.from_numpy(real.astype(np.int64))
        yield {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": ids.masked_fill(torch.from_numpy(learned == 0), -100),
        }


def _passes(samples: Samples, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of pass after pass over `samples`, each pass shuffled by its own seed (as an
    epoch is), without end."""
    if not len(samples):
        return
    for number in itertools.count():
        yield from batches(samples, batch_size, shuffle_seed=seed * 1_000 + number)


def _predicted_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Tokens the batch's loss is the mean over: learned ones after each row's first (the model
    predicts token t from the tokens before it)."""
    return int((batch["labels"][:, 1:] != -100).sum())


def _value(loss: torch.Tensor | None) -> float:
    return math.nan if loss is None else loss.item()


@torch.no_grad()
def add_proximal_gradient(
    params: list[torch.nn.Parameter], global_params: list[torch.Tensor], mu: float
) -> None:
    """Add the gradient of FedProx's term mu/2 * ||w - w_global||^2 (Li et al. 2020), that is
    mu * (w - w_global), to each parameter's gradient. Adding it directly, rather than
    differentiating the term, keeps autograd from holding a model-sized difference."""
    for param, global_param in zip(params, global_params):
        if param.grad is not None:
            param.grad.add_(param - global_param, alpha=mu)


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@dataclass(frozen=True)
class Precision:
    """How a step computes: autocast dtype ("fp32", "bf16", "fp16") and gradient checkpointing.
    Weights and optimizer state stay fp32 whatever the compute dtype."""

    compute: str = "fp32"
    gradient_checkpointing: bool = False


def train(
    model: torch.nn.Module,
    samples: Samples,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    mu: float,
    device: torch.device,
    seed: int,
    grad_accum_steps: int = 1,
    precision: Precision = Precision(),
    on_step: StepCallback | None = None,
    local_steps: int = 0,
    correction: list[torch.Tensor] | None = None,
) -> TrainResult:
    """Local AdamW training with FedProx's proximal term (mu > 0). A step is one batch; the
    optimizer steps every `grad_accum_steps` batches (and after the last). `local_steps` > 0:
    exactly that many optimizer steps instead of `epochs`, passing over the samples as often as
    it takes (each pass reshuffled, seeded as an epoch is). A batch without a learned token (its
    samples' completions cut, loss_on=completion) has no loss: it is skipped, reported as NaN.
    `correction`: SCAFFOLD's c - c_i for each trainable tensor, applied after each optimizer step
    (engine.ml.control_variates)."""
    torch.manual_seed(seed)  # dropout (LoRA's included) is reproducible too
    model.to(device).train()
    if precision.gradient_checkpointing:
        models.checkpoint_activations(model, True)
    params = trainable(model)
    global_params = [p.detach().clone() for p in params] if mu > 0 else []
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.compute == "fp16")
    planned: Iterator[dict[str, torch.Tensor]]
    if local_steps > 0:
        steps_total = local_steps * grad_accum_steps
        planned = itertools.islice(_passes(samples, batch_size, seed), steps_total)
    else:
        steps_total = epochs * math.ceil(len(samples) / batch_size)
        planned = itertools.chain.from_iterable(
            batches(samples, batch_size, shuffle_seed=seed * 1_000 + epoch)
            for epoch in range(epochs)
        )
    losses: list[torch.Tensor] = []
    steps = tokens = optimizer_steps = 0
    accumulated = False  # whether the optimizer step to come has a gradient to take
    started = time.perf_counter()
    for batch in planned:
        steps += 1
        tokens += int(batch["attention_mask"].sum())  # counted on the CPU: no device sync
        learns = _predicted_tokens(batch) > 0
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = None
        if learns:
            with models.autocast(precision.compute, device):
                lm_loss = model(**batch).loss
            scaler.scale(lm_loss / grad_accum_steps).backward()
            loss = lm_loss.detach()
            losses.append(loss)
            accumulated = True
        if accumulated and (steps % grad_accum_steps == 0 or steps == steps_total):
            scaler.unscale_(optimizer)
            if mu > 0:
                add_proximal_gradient(params, global_params, mu)
            scaler.step(optimizer)
            scaler.update()
            if correction is not None:
                control_variates.apply_correction(params, correction, learning_rate)
            optimizer.zero_grad(set_to_none=True)
            optimizer_steps += 1
            accumulated = False
        if on_step is not None:
            on_step(steps, steps_total, functools.partial(_value, loss))
    if precision.gradient_checkpointing:
        models.checkpoint_activations(model, False)
    del optimizer, global_params
    return TrainResult(
        train_loss=float(np.mean([loss.item() for loss in losses])) if losses else math.nan,
        examples=len(samples),
        tokens=tokens,
        steps=steps,
        optimizer_steps=optimizer_steps,
        seconds=time.perf_counter() - started,
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    samples: Samples,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
) -> float:
    """Mean next-token cross-entropy over all predicted (learned) tokens of `samples`."""
    model.to(device).eval()
    total_loss, total_tokens = 0.0, 0
    for batch in batches(samples, batch_size):
        predicted = _predicted_tokens(batch)
        if not predicted:  # its mean would be 0/0
            continue
        batch = {k: v.to(device) for k, v in batch.items()}
        with models.autocast(precision, device):
            loss = model(**batch).loss
        total_loss += loss.item() * predicted
        total_tokens += predicted
    return total_loss / max(total_tokens, 1)
