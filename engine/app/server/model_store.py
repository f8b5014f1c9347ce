"""The ServerApp's checkpoints of the global model (engine.record.checkpoints writes them safely).

Every round's global model is saved with what the strategy keeps between rounds (FedAvgM's
momentum, fedtui's or Flower's own; FedOpt's moments; SCAFFOLD's control variates), so that a
run goes on from its last round (`--resume`) and a fork starts from a kept round exactly as the
run itself would have gone on. When the eval loss improved, `best` also holds the whole model
in `save_pretrained` format with its tokenizer, ready for `transformers` or `fedtui
export-model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.serverapp.strategy import FedAvg
from safetensors.torch import load_file, save_file

from engine.app.server.aggregation import ServerMomentum
from engine.app.server.scaffold import ControlVariates
from engine.app.server.strategy import restore_strategy_state, strategy_state
from engine.ml import model as models
from engine.record import checkpoints


class ModelStore:
    def __init__(
        self,
        folder: Path | None,
        model: Any,  # a transformers model, or peft's wrapper of one
        tokenizer: Any,
        strategy: FedAvg,
        momentum: ServerMomentum | None,
        variates: ControlVariates | None = None,
    ) -> None:
        """`folder`: the run's checkpoints/ (None: nothing is saved)."""
        self.folder = folder
        self.model = model
        self.weights = models.trainable_weights(model)
        self.tokenizer = tokenizer
        self.strategy = strategy
        self.momentum = momentum
        self.variates = variates

    def save(self, server_round: int, eval_loss: float, best: bool, keep: list[int] | None) -> None:
        """The global model after `server_round` (and as the best so far when `best`); `keep`:
        the rounds whose checkpoints stay (None: every round's)."""
        if self.folder is None:
            return
        info = {"eval_loss": eval_loss}
        weights = _on_cpu(self.weights)
        state = _on_cpu(self._server_state())

        def write(tmp: Path) -> None:
            save_file(weights, tmp / checkpoints.WEIGHTS_FILE)
            if state:
                save_file(state, tmp / checkpoints.SERVER_STATE_FILE)

        checkpoints.save_round(self.folder, server_round, write, info)
        if keep is not None:
            checkpoints.keep_rounds(self.folder, keep)
        if best:

            def write_pretrained(tmp: Path) -> None:
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)

            checkpoints.save_best(self.folder, server_round, write_pretrained, info)

    def restore(self, checkpoint: Path, server_round: int) -> None:
        """The global model, and the strategy's state, as they were after `server_round`;
        `checkpoint` must hold that round."""
        info = checkpoints.read_info(checkpoint)
        if info is None or info["round"] != server_round:
            raise RuntimeError(
                f"{checkpoint} does not hold the global model of round {server_round}"
            )
        models.load_weights(self.model, load_file(checkpoint / checkpoints.WEIGHTS_FILE))
        state_file = checkpoint / checkpoints.SERVER_STATE_FILE
        state = load_file(state_file) if state_file.is_file() else {}
        if self.momentum is not None:
            self.momentum.restore(state, self.weights)
        if self.variates is not None:
            self.variates.restore(state)
        restore_strategy_state(self.strategy, state, list(self.weights))

    def _server_state(self) -> dict[str, torch.Tensor]:
        state = strategy_state(self.strategy, list(self.weights))
        if self.momentum is not None:
            state.update(self.momentum.state())
        if self.variates is not None:
            state.update(self.variates.state())
        return state


def _on_cpu(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
