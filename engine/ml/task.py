"""Training and evaluation of a causal LM: local training with FedProx's proximal term and the
token-weighted mean loss used for central evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from engine.ml import model as models
from engine.ml.samples import Samples

StepCallback = Callable[[int, int, float], None]  # step, steps_total, loss


@dataclass
class TrainResult:
    train_loss: float  # mean language-model loss over all local steps (no proximal term)
    examples: int
    tokens: int  # real (not padding) tokens trained on, every epoch counted
    steps: int
    seconds: float


def local_seed(run_seed: int, client: int, server_round: int) -> int:
    """The seed of one client's local training in one round: distinct per client and round,
    the same wherever that training runs (a ClientApp, a worker, a plain-loop benchmark)."""
    return (run_seed * 1_000 + client) * 1_000 + server_round


def batches(
    samples: Samples, batch_size: int, *, shuffle_seed: int | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    order = np.arange(len(samples))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(samples))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids = torch.from_numpy(samples.ids[rows].astype(np.int64))
        mask = torch.from_numpy(samples.mask[rows].astype(np.int64))
        yield {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


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
) -> TrainResult:
    """Local AdamW training with FedProx's proximal term (mu > 0). A step is one batch; the
    optimizer steps every `grad_accum_steps` batches (and after the last)."""
    torch.manual_seed(seed)  # dropout (LoRA's included) is reproducible too
    model.to(device).train()
    if precision.gradient_checkpointing:
        models.checkpoint_activations(model, True)
    params = trainable(model)
    global_params = [p.detach().clone() for p in params] if mu > 0 else []
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.compute == "fp16")
    steps_total = epochs * math.ceil(len(samples) / batch_size)
    losses: list[float] = []
    started = time.perf_counter()
    for epoch in range(epochs):
        for batch in batches(samples, batch_size, shuffle_seed=seed * 1_000 + epoch):
            batch = {k: v.to(device) for k, v in batch.items()}
            with models.autocast(precision.compute, device):
                lm_loss = model(**batch).loss
            scaler.scale(lm_loss / grad_accum_steps).backward()
            losses.append(lm_loss.item())
            if len(losses) % grad_accum_steps == 0 or len(losses) == steps_total:
                scaler.unscale_(optimizer)
                if mu > 0:
                    add_proximal_gradient(params, global_params, mu)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            if on_step is not None:
                on_step(len(losses), steps_total, losses[-1])
    if precision.gradient_checkpointing:
        models.checkpoint_activations(model, False)
    del optimizer, global_params
    return TrainResult(
        train_loss=float(np.mean(losses)),
        examples=len(samples),
        tokens=epochs * int(samples.mask.sum()),
        steps=len(losses),
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
    """Mean next-token cross-entropy over all predicted tokens of `samples`."""
    model.to(device).eval()
    total_loss, total_tokens = 0.0, 0
    for batch in batches(samples, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        predicted = int((batch["labels"][:, 1:] != -100).sum())
        with models.autocast(precision, device):
            loss = model(**batch).loss
        total_loss += loss.item() * predicted
        total_tokens += predicted
    return total_loss / max(total_tokens, 1)
