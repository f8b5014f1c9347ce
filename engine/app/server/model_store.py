"""The ServerApp's checkpoints of the global model (engine.record.checkpoints writes them safely).

`last`, every round, holds the trainable weights (what `--resume` starts from); `best`, when
the eval loss improved, the whole model in `save_pretrained` format with its tokenizer, ready
for `transformers` or `fedtui export`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from engine.ml import model as models
from engine.record import checkpoints


def save_round(
    folder: Path,
    server_round: int,
    model: Any,  # a transformers model, or peft's wrapper of one
    tokenizer: Any,
    weights: Mapping[str, torch.Tensor],
    info: dict[str, Any],
    best: bool,
) -> None:
    """Save `last` for `server_round`, and `best` too when `best`."""
    on_cpu = {name: tensor.detach().cpu() for name, tensor in weights.items()}
    checkpoints.save(
        folder,
        "last",
        server_round,
        lambda tmp: save_file(on_cpu, tmp / checkpoints.WEIGHTS_FILE),
        info,
    )
    if not best:
        return

    def write_pretrained(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    checkpoints.save(folder, "best", server_round, write_pretrained, info)


def load_last(folder: Path, server_round: int, model: torch.nn.Module) -> None:
    """Load the `last` checkpoint into `model`; it must hold `server_round`."""
    last = folder / "last"
    info = checkpoints.read_info(last)
    if info is None or info["round"] != server_round:
        raise RuntimeError(f"cannot resume: {last} does not hold round {server_round}")
    models.load_weights(model, load_file(last / checkpoints.WEIGHTS_FILE))
