"""What the ServerApp takes from a client's reply to a train message.

A reply comes from a peer: a client on another host, or anything that reached the Fleet API.
Before it is folded into the global model, what it claims is checked against what the server
knows: its partition is its node's own and no other live node's; its example count, FedAvg's
weight, is a whole number from 1 to the samples that partition holds; its weights are the
global model's trainable tensors (names, shapes, the run's transfer dtype), in its arrays or in
the one file the round expects from that client in the run's own shared folder; a SCAFFOLD
run's control variate, where a reply has one, is those tensors too, in its arrays or in the file
beside its weights file. A reply that fails is that client's error, and the round goes on
with the others.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Message

from engine.app import shared_weights
from engine.app.transfer import VARIATE_RECORD, array_layout, carried
from engine.core.config import TRANSFER_DTYPES

Shapes = dict[str, tuple[int, ...]]
NUMBERS = ("train-loss", "steps", "train-seconds")  # the metrics the round's record reads


@dataclass(frozen=True)
class ReplyRules:
    shapes: Shapes  # the global model's trainable tensors
    transfer_dtype: str  # "fp32", "fp16"
    partition_sizes: Sequence[int]  # the samples each client holds
    reply_file: Callable[[int], Path | None]  # the file a client may name this round, if any
    variates: bool = False  # a reply may carry SCAFFOLD's control variate

    @classmethod
    def of(
        cls,
        weights: Mapping[str, torch.Tensor],
        transfer_dtype: str,
        partition_sizes: Sequence[int],
        reply_file: Callable[[int], Path | None],
        *,
        variates: bool = False,
    ) -> ReplyRules:
        shapes = {name: tuple(tensor.shape) for name, tensor in weights.items()}
        return cls(shapes, transfer_dtype, partition_sizes, reply_file, variates)


def claimed_partition(reply: Message, num_clients: int) -> int | str:
    """The partition a reply says it trained, or why it says none the run has."""
    metrics = reply.content.metric_records.get("metrics")
    value = metrics.get("partition-id") if metrics is not None else None
    partition = _whole(value)
    if partition is None or not 0 <= partition < num_clients:
        return f"its reply names partition {value!r}; this run has 0-{num_clients - 1}"
    return partition


def refusal(reply: Message, client: int, rules: ReplyRules) -> str | None:
    """Why `client`'s reply cannot be folded in, or None."""
    metrics = reply.content.metric_records["metrics"]
    examples = metrics.get("num-examples")
    held = rules.partition_sizes[client]
    count = _whole(examples)
    if count is None or not 1 <= count <= held:
        return f"its reply claims {examples!r} examples; partition {client} holds {held}"
    for key in NUMBERS:
        value = metrics.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"its reply's {key} is {str(value)[:100]!r}, not a number"
    why = _variate_refusal(reply, client, rules)
    if why:
        return why
    named = shared_weights.named_file(reply.content.config_records.get(shared_weights.REPLY_RECORD))
    if named is not None:
        return _file_refusal(named, rules.reply_file(client), rules, "weights")
    arrays = reply.content.array_records.get("arrays")
    if arrays is None:
        return "its reply holds no weights"
    return _arrays_refusal(arrays, rules, "weights")


def _variate_refusal(reply: Message, client: int, rules: ReplyRules) -> str | None:
    source = carried(reply.content, VARIATE_RECORD)
    if source is None:
        return None
    if not rules.variates:
        return "its reply carries control variates, which this run's strategy does not use"
    if isinstance(source, Path):
        expected = rules.reply_file(client)
        beside = shared_weights.variate_file(expected) if expected is not None else None
        return _file_refusal(source, beside, rules, "control variates")
    return _arrays_refusal(source, rules, "control variates")


def _arrays_refusal(arrays: ArrayRecord, rules: ReplyRules, what: str) -> str | None:
    try:
        layout = {name: array_layout(array) for name, array in arrays.items()}
    except ValueError as error:
        return f"its reply's {what} are not readable: {error}"
    expected = np.dtype(TRANSFER_DTYPES[rules.transfer_dtype])
    return _layout_refusal(
        {name: (shape, str(dtype)) for name, (shape, dtype, _) in layout.items()},
        rules.shapes,
        str(expected),
        what,
    )


def _file_refusal(named: Path, expected: Path | None, rules: ReplyRules, what: str) -> str | None:
    if expected is None or named != expected:
        return f"its reply names the file {str(named)[:200]!r}, not the one this round expects"
    try:
        if not stat.S_ISREG(os.lstat(named).st_mode):
            return f"its {what} file {named.name} is not a regular file"
        layout = shared_weights.layout(named)
    except Exception as error:  # noqa: BLE001 (safetensors raises its own kinds)
        return f"its {what} file {named.name} is not readable: {str(error)[:200]}"
    return _layout_refusal(
        layout, rules.shapes, shared_weights.dtype_name(rules.transfer_dtype), what
    )


def _layout_refusal(
    layout: Mapping[str, tuple[tuple[int, ...], str]], shapes: Shapes, dtype: str, what: str
) -> str | None:
    missing, unexpected = sorted(shapes.keys() - layout.keys()), sorted(layout.keys() - shapes)
    if missing or unexpected:
        return (
            f"its {what} do not fit the model: missing {missing[:3]}, unexpected "
            f"{[name[:100] for name in unexpected[:3]]}"
        )
    for name, (shape, got) in layout.items():
        if shape != shapes[name]:
            return f"its {what}' {name} is {list(shape)}, the model's is {list(shapes[name])}"
        if got != dtype:
            return f"its {what}' {name} is {got}, the run sends {dtype}"
    return None


def _whole(value: object) -> int | None:
    """`value` as a whole number (an int, or a float that is one: Flower's metrics may carry
    either), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value)
