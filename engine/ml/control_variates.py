"""SCAFFOLD's client side (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging
for Federated Learning", Algorithm 1 with option II control variates).

A client i trains the global model x with its local steps corrected by the control variates,
    y <- y - lr * (g_i(y) - c_i + c),
and then takes its new variate from how far it went,
    c_i+ = c_i - c + (x - y) / (K * lr)          (K local optimizer steps).
Both need only the correction d_i = c - c_i, which is what the server sends (it keeps c and
every c_i: engine.app.server.scaffold), since c_i+ = (x - y) / (K * lr) - d_i.

fedtui's local optimizer is AdamW, so the correction is applied after each optimizer step as a
plain step of its own, y <- y - lr * d_i (as OpenFedLLM applies it to LLM fine-tuning); with SGD
the two together are the paper's corrected step exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def apply_correction(
    params: Sequence[torch.Tensor], correction: Sequence[torch.Tensor], learning_rate: float
) -> None:
    """One local step's share of the variates: each parameter moves by -lr * (c - c_i)."""
    for param, difference in zip(params, correction, strict=True):
        param.sub_(difference, alpha=learning_rate)


@torch.no_grad()
def new_control_variate(
    start: Sequence[torch.Tensor],
    trained: Sequence[torch.Tensor],
    correction: Sequence[torch.Tensor],
    steps: int,
    learning_rate: float,
) -> list[torch.Tensor]:
    """Option II's c_i+ = (x - y) / (K * lr) - (c - c_i), from the round's starting weights x,
    the trained ones y, the correction and K optimizer steps (fp32, on the weights' device)."""
    if steps < 1 or learning_rate <= 0:
        raise ValueError(
            f"a control variate needs steps >= 1 and lr > 0, got {steps}, {learning_rate}"
        )
    scale = 1.0 / (steps * learning_rate)
    return [
        (x.float() - y.float()).mul_(scale).sub_(d.float())
        for x, y, d in zip(start, trained, correction, strict=True)
    ]
