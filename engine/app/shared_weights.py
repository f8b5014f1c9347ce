"""Weights through shared memory, for clients on the server's own machine.

Flower moves a model as 5 MB chunks over HTTP, with a SHA-256 per chunk, through the SuperLink
and the SuperNode, both ways: at 135M parameters that took ~65 s a round (BENCHMARKS.md). When
the controller starts the clients itself (`fedtui run`, deployment engine), the server writes
each round's global model once into a folder in `/dev/shm`, the train messages (and
`client_eval`'s evaluate messages) carry its path instead of the arrays, and each client writes
its trained weights beside it and replies with their path (SCAFFOLD's control variates take
the same way, each client's own file). The messages, their metrics,
replies, errors and timeouts stay Flower's; only the bytes take the shorter way.

The files are safetensors files, written one tensor at a time (no second copy of the model) and
read by memory-mapping. The values are those Flower's messages would carry (cast to
`transfer_dtype`), so a run learns the same either way. The ServerApp owns the folder: it
removes each round's files once folded in, and the folder when it ends, or when the controller
is gone (engine.system.guard); the controller removes whatever a killed ServerApp left (it
imports this module, so torch and safetensors are imported where they are used).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from engine.core.config import TRANSFER_DTYPES
from engine.system import guard

if TYPE_CHECKING:
    import torch
    from flwr.app import ConfigRecord

# A folder every user writes to: each run makes its own 0700 folder there (mkdtemp), and
# leftovers are removed only if this user owns them (engine.system.guard.remove_if_mine).
SHM_ROOT = Path("/dev/shm")  # nosec B108
PREFIX = "fedtui-weights-"
# Keys of the records that name a file, in a message's config and in a reply.
FILE_KEY = "weights-file"
REPLY_RECORD = "shared-weights"


def write(path: Path, weights: Mapping[str, torch.Tensor], transfer_dtype: str) -> int:
    """Write `weights` cast to `transfer_dtype` as a safetensors file, one tensor at a time;
    the file's size. The file appears whole (written under another name, then renamed)."""
    dtype = _torch_dtype(transfer_dtype)
    header: dict[str, dict] = {}
    offset = 0
    for name, tensor in weights.items():
        size = tensor.numel() * dtype.itemsize
        header[name] = {
            "dtype": dtype_name(transfer_dtype),
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)))
        file.write(encoded)
        for tensor in weights.values():
            cast = tensor.detach().to("cpu", dtype).contiguous()
            file.write(cast.numpy().data.cast("B"))
    os.replace(partial, path)
    return 8 + len(encoded) + offset


def model_bytes(weights: Mapping[str, torch.Tensor], transfer_dtype: str) -> int:
    """The size of `weights`' values in a file (its header aside)."""
    return (
        sum(tensor.numel() for tensor in weights.values()) * _torch_dtype(transfer_dtype).itemsize
    )


def _torch_dtype(transfer_dtype: str) -> torch.dtype:
    import torch

    return getattr(torch, TRANSFER_DTYPES[transfer_dtype])


def read(path: Path) -> tuple[list[str], Iterator[tuple[str, torch.Tensor]]]:
    """The names in a weights file, and (name, tensor) for each in turn."""
    from safetensors import safe_open

    opened = safe_open(str(path), framework="pt", device="cpu")
    names = list(opened.keys())

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for name in names:
            yield name, opened.get_tensor(name)

    return names, tensors()


def layout(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each tensor's shape and dtype in a weights file (safetensors' names: F32, F16), from
    its header alone; safetensors refuses a file whose header and size disagree."""
    from safetensors import safe_open

    shapes_and_dtypes = {}
    with safe_open(str(path), framework="pt", device="cpu") as opened:
        for name in opened.keys():  # noqa: SIM118 (a safe_open is not a mapping)
            tensor = opened.get_slice(name)
            shapes_and_dtypes[name] = (tuple(tensor.get_shape()), tensor.get_dtype())
    return shapes_and_dtypes


def dtype_name(transfer_dtype: str) -> str:
    """safetensors' name of `transfer_dtype` (F32, F16)."""
    return f"F{_torch_dtype(transfer_dtype).itemsize * 8}"


class SharedFolder:
    """The folder of one run's weight files in /dev/shm, created by its ServerApp."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, run_name: str, needed_bytes: int) -> SharedFolder | str:
        """A new folder, or why there is none: no /dev/shm, or too little room in it for
        `needed_bytes` (Docker gives containers 64 MB unless told `--shm-size`)."""
        if not SHM_ROOT.is_dir():
            return f"{SHM_ROOT} does not exist"
        free = shutil.disk_usage(SHM_ROOT).free
        if free < needed_bytes:
            return (
                f"{SHM_ROOT} has {free / 2**20:.0f} MiB free, a round needs "
                f"{needed_bytes / 2**20:.0f} MiB"
            )
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{run_name}-", dir=SHM_ROOT))
        guard.remove_when_gone(path)
        return cls(path)

    def global_file(self, server_round: int, purpose: str) -> Path:
        """Where the global model goes that the clients `purpose` ("train", "evaluate")."""
        return self.path / f"{purpose}-r{server_round}.safetensors"

    def clear(self) -> None:
        """Remove every file: the round is over (a crashed client's half-written reply too)."""
        for path in self.path.iterdir():
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def naming(path: Path) -> ConfigRecord:
    """A record that names a weights file (a message's config, or a reply's record)."""
    from flwr.app import ConfigRecord

    return ConfigRecord({FILE_KEY: str(path)})


def named_file(record: ConfigRecord | None) -> Path | None:
    """The weights file a record names, if it names one."""
    name = record.get(FILE_KEY) if record is not None else None
    return Path(str(name)) if name else None


def reply_file(global_file: Path, client: int) -> Path:
    """Where a client writes the weights it trained from `global_file`."""
    return global_file.with_name(f"{global_file.stem}-client{client}.safetensors")


def correction_file(global_file: Path, client: int) -> Path:
    """Where the server writes SCAFFOLD's c - c_i for a client training from `global_file`."""
    return global_file.with_name(f"{global_file.stem}-client{client}-correction.safetensors")


def variate_file(reply: Path) -> Path:
    """Where a client writes SCAFFOLD's new control variate, beside its trained weights."""
    return reply.with_name(f"{reply.stem}-variate.safetensors")


def remove_leftovers(run_name: str) -> None:
    """Remove the folders of a run whose ServerApp could not (killed with SIGKILL)."""
    for path in SHM_ROOT.glob(f"{PREFIX}{run_name}-*"):
        guard.remove_if_mine(path)
