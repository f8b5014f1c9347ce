"""A client's CUDA out-of-memory error as one line that names the device and what to change.

Flower passes only an exception's text to the server, and torch's text says "GPU 0" for
whichever GPU the process sees first (fedtui pins each client with CUDA_VISIBLE_DEVICES), in a
paragraph about the caching allocator.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

REMEDY = (
    "lower train_batch_size, eval_batch_size or seq_len, "
    'or set lora.enabled, gradient_checkpointing or precision = "bf16"'
)


class OutOfGpuMemory(RuntimeError):
    """The client's model, batch or activations did not fit its GPU."""


def describe(error_text: str, device: torch.device, visible: str | None, name: str | None) -> str:
    """The sentence for torch's out-of-memory `error_text` on `device`, where the process sees
    the GPUs `visible` (CUDA_VISIBLE_DEVICES) and `device` is called `name`."""
    index = device.index or 0
    pinned = [gpu.strip() for gpu in visible.split(",")] if visible else []
    physical = pinned[index] if index < len(pinned) else str(index)
    where = f"{device.type}:{index} (GPU {physical}" + (f", {name})" if name else ")")
    tried = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", error_text)
    allocating = f" allocating {tried[1]}" if tried else ""
    return f"out of GPU memory on {where}{allocating}; {REMEDY}"


@contextmanager
def named_on(device: torch.device) -> Iterator[None]:
    """Raise torch's out-of-memory error on `device` as `OutOfGpuMemory`, described."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise OutOfGpuMemory(describe(str(error), device, visible, name)) from None
