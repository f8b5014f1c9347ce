"""How the ServerApp's global model reaches the clients: inside Flower's messages, or, for
clients the controller started on this machine, as a file in /dev/shm that the messages name
(engine.app.shared_weights). A local run that asks for shared memory says in a `notice`
event which it got.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from engine.app import shared_weights, transfer
from engine.app.server.reply_checks import ReplyRules
from engine.core import events as ev
from engine.core.config import RunConfig
from engine.ml.model import trainable_weights


class ModelDelivery:
    def __init__(self, model: torch.nn.Module, transfer_dtype: str) -> None:
        """Through Flower's messages; `open` may choose shared memory. `model`: the global
        model, whose trainable weights are what is sent."""
        self.model = model
        self.weights = trainable_weights(model)
        self.transfer_dtype = transfer_dtype
        self.shared: shared_weights.SharedFolder | None = None

    @classmethod
    def open(
        cls,
        config: RunConfig,
        run_name: str,
        model: torch.nn.Module,
        local: bool,
        publish: Callable[..., None],
    ) -> ModelDelivery:
        """`local`: the clients run on this machine, started by the controller."""
        delivery = cls(model, config.transfer_dtype)
        if config.shared_memory_weights and local:
            # the global model and each client's reply; SCAFFOLD's variates both ways too
            copies = config.sampled_per_round * (3 if config.strategy == "scaffold" else 1) + 1
            folder = shared_weights.SharedFolder.create(
                run_name,
                shared_weights.model_bytes(delivery.weights, config.transfer_dtype) * copies,
            )
            if isinstance(folder, str):
                publish(ev.NOTICE, message=f"weights go through Flower's messages: {folder}")
            else:
                publish(ev.NOTICE, message=f"weights go through shared memory: {folder.path}")
                delivery.shared = folder
        return delivery

    def outgoing(self, server_round: int, purpose: str) -> tuple[ArrayRecord, ConfigRecord, int]:
        """What the messages that have clients `purpose` ("train", "evaluate") carry of the
        global model (its arrays, or the path of the shared file it was written to), and its
        size in bytes."""
        if self.shared is None:
            arrays = transfer.to_arrays(self.model, self.transfer_dtype)
            return arrays, ConfigRecord(), arrays.count_bytes()
        path = self.shared.global_file(server_round, purpose)
        size = shared_weights.write(path, self.weights, self.transfer_dtype)
        return ArrayRecord(), shared_weights.naming(path), size

    def train_file(self, server_round: int) -> Path | None:
        """The shared file of this round's global model, when it goes through shared memory."""
        return self.shared.global_file(server_round, "train") if self.shared else None

    def reply_rules(
        self, server_round: int, partition_sizes: Sequence[int], *, variates: bool = False
    ) -> ReplyRules:
        """What a reply to this round's train message must hold: the global model's tensors,
        and, through shared memory, the one file its client was to write (none otherwise);
        `variates`: it may hold SCAFFOLD's control variate too (in the message, or in the file
        beside its weights file)."""
        shared = self.shared

        def reply_file(client: int) -> Path | None:
            if shared is None:
                return None
            return shared_weights.reply_file(shared.global_file(server_round, "train"), client)

        return ReplyRules.of(
            self.weights, self.transfer_dtype, partition_sizes, reply_file, variates=variates
        )

    def round_over(self) -> None:
        """The messages' files, and the clients' replies, are no longer needed."""
        if self.shared is not None:
            self.shared.clear()

    def close(self) -> None:
        if self.shared is not None:
            self.shared.remove()

    def __enter__(self) -> ModelDelivery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
