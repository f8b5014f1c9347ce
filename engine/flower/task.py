"""Training and evaluation of a causal LM: local training with FedProx's proximal term and the
token-weighted mean loss used for central evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from engine.data import Samples

StepCallback = Callable[[int, int, float], None]  # step, steps_total, loss


@dataclass
class TrainResult:
    train_loss: float  # mean language-model loss over all local steps (no proximal term)
    examples: int
    steps: int
    seconds: float


def batches(samples: Samples, batch_size: int, *, shuffle_seed: int | None = None
            ) -> Iterator[dict[str, torch.Tensor]]:
    order = np.arange(len(samples))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(samples))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ids = torch.from_numpy(samples.ids[rows].astype(np.int64))
        mask = torch.from_numpy(samples.mask[rows].astype(np.int64))
        yield {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def proximal_term(model: torch.nn.Module, global_params: list[torch.Tensor], mu: float
                  ) -> torch.Tensor:
    """mu/2 * ||w - w_global||^2 over the trainable parameters (FedProx, Li et al. 2020)."""
    squared = sum(((w - g) ** 2).sum() for w, g in zip(trainable(model), global_params))
    return (mu / 2.0) * squared


def training_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                  global_params: list[torch.Tensor], mu: float) -> tuple[torch.Tensor, float]:
    """The objective a FedProx client minimises, and the plain LM loss it reports."""
    lm_loss = model(**batch).loss
    if mu > 0:
        return lm_loss + proximal_term(model, global_params, mu), lm_loss.item()
    return lm_loss, lm_loss.item()


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train(model: torch.nn.Module, samples: Samples, *, epochs: int, batch_size: int,
          learning_rate: float, mu: float, device: torch.device, seed: int,
          on_step: StepCallback | None = None) -> TrainResult:
    model.to(device).train()
    global_params = [p.detach().clone() for p in trainable(model)]
    optimizer = torch.optim.AdamW(trainable(model), lr=learning_rate)
    steps_total = epochs * math.ceil(len(samples) / batch_size)
    losses: list[float] = []
    started = time.perf_counter()
    for epoch in range(epochs):
        for batch in batches(samples, batch_size, shuffle_seed=seed * 1_000 + epoch):
            batch = {k: v.to(device) for k, v in batch.items()}
            objective, lm_loss = training_loss(model, batch, global_params, mu)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            losses.append(lm_loss)
            if on_step is not None:
                on_step(len(losses), steps_total, lm_loss)
    del optimizer, global_params
    return TrainResult(train_loss=float(np.mean(losses)), examples=len(samples),
                       steps=len(losses), seconds=time.perf_counter() - started)


@torch.no_grad()
def evaluate(model: torch.nn.Module, samples: Samples, *, batch_size: int,
             device: torch.device) -> float:
    """Mean next-token cross-entropy over all predicted tokens of `samples`."""
    model.to(device).eval()
    total_loss, total_tokens = 0.0, 0
    for batch in batches(samples, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        predicted = int((batch["labels"][:, 1:] != -100).sum())
        total_loss += model(**batch).loss.item() * predicted
        total_tokens += predicted
    return total_loss / max(total_tokens, 1)
