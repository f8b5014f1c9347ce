"""Weights in and out of Flower's ArrayRecords, without copies beyond the one Flower needs.

An `Array` holds its tensor as `np.save` bytes. Reading goes through `tensor_view`, a read-only
tensor over those bytes (no `np.load` copy), so a client copies each received array straight
into its model and a server folds each reply into its running mean, releasing the bytes as it
goes. Writing casts one tensor at a time (fp16 transfer halves the bytes), so no second copy
of the whole model exists while a record is built. Weights that came through shared memory
(engine.app.shared_weights) are read the same way, from their file.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict

from engine.app import shared_weights
from engine.core.config import TRANSFER_DTYPES
from engine.ml.model import check_names, trainable_weights

_HEADER_BYTES = 4096  # np.save pads its header to 64 bytes; a few hundred at most in practice
# The records SCAFFOLD's control variates travel in (engine.ml.control_variates): c - c_i in a
# train message, the client's new c_i in its reply.
CORRECTION_RECORD = "scaffold-correction"
VARIATE_RECORD = "scaffold-variate"


def to_arrays(model: torch.nn.Module, transfer_dtype: str) -> ArrayRecord:
    """The model's trainable weights as an ArrayRecord in `transfer_dtype`."""
    return tensors_to_arrays(trainable_weights(model), transfer_dtype)


def tensors_to_arrays(tensors: Mapping[str, torch.Tensor], transfer_dtype: str) -> ArrayRecord:
    """Named tensors as an ArrayRecord in `transfer_dtype`, cast one at a time."""
    dtype = np.dtype(TRANSFER_DTYPES[transfer_dtype])
    record = ArrayRecord()
    for name, tensor in tensors.items():
        record[name] = Array(tensor.detach().cpu().numpy().astype(dtype, copy=False))
    return record


def array_layout(array: Array) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape and dtype an Array's bytes hold (their np.save header, which is what is read,
    not the Array's own description), and where the values start. ValueError if the header is
    not one, or the bytes are fewer than it says."""
    header = io.BytesIO(array.data[:_HEADER_BYTES])
    version = np.lib.format.read_magic(header)
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran_order, dtype = read_header(header)
    if fortran_order:
        raise ValueError("Fortran-ordered arrays are not supported")
    offset = header.tell()
    if len(array.data) < offset + int(np.prod(shape)) * dtype.itemsize:
        raise ValueError("the array's bytes are fewer than its header says")
    return tuple(shape), dtype, offset


def tensor_view(array: Array) -> torch.Tensor:
    """A read-only CPU tensor over an Array's bytes: nothing is copied."""
    shape, dtype, offset = array_layout(array)
    flat = np.frombuffer(array.data, dtype=dtype, count=int(np.prod(shape)), offset=offset)
    with warnings.catch_warnings():  # the view is never written to
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(flat).reshape(shape)


def drain(arrays: ArrayRecord) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, view) for each array, removing it from the record once the caller is done with
    it, so the record's bytes are freed array by array."""
    for name in list(arrays):
        yield name, tensor_view(arrays[name])
        del arrays[name]


def weights_in(source: ArrayRecord | Path) -> tuple[list[str], Iterator[tuple[str, torch.Tensor]]]:
    """The names in a record (drained as it is read) or a shared weights file, and (name,
    tensor) for each in turn."""
    if isinstance(source, Path):
        return shared_weights.read(source)
    return list(source), drain(source)


def carried(content: RecordDict, key: str) -> ArrayRecord | Path | None:
    """What a message holds under `key`: the shared file a record of that name names, or the
    arrays of that name (SCAFFOLD's variates go either way, as the weights do)."""
    named = shared_weights.named_file(content.config_records.get(key))
    return named if named is not None else content.array_records.get(key)


def size_of(source: ArrayRecord | Path) -> int:
    """The bytes that came: a record's arrays, or a shared file."""
    return source.stat().st_size if isinstance(source, Path) else source.count_bytes()


@torch.no_grad()
def load_arrays(model: torch.nn.Module, source: ArrayRecord | Path) -> None:
    """Copy a record (emptying it) or a shared weights file into the model's trainable
    weights."""
    targets = trainable_weights(model)
    names, tensors = weights_in(source)
    check_names(targets, names)
    for name, tensor in tensors:
        targets[name].copy_(tensor)


def fingerprint(weights: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a model's trainable weights as the server holds them (fp32), read from the
    tensors themselves, to tell one global model from another in the record."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        tensor = weights[name].detach()
        digest.update(tensor.cpu().contiguous().numpy().data.cast("B"))  # a view, no copy
    return digest.hexdigest()
