"""Checkpoints in a run folder, written so that a crash never leaves a half-written one in place.

    checkpoints/best -> best-round-0003/   the best global model so far (save_pretrained format)
    checkpoints/last -> last-round-0005/   the latest global model (what `--resume` starts from)

Each checkpoint is written into a temporary folder, renamed to its final versioned name (an
atomic rename), and only then is the `best`/`last` link switched to it (an atomic replace). A
reader following the link therefore always finds a complete checkpoint; `fedtui-checkpoint.json`,
written last, says which round and loss it holds.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

INFO_FILE = "fedtui-checkpoint.json"
WEIGHTS_FILE = "model.safetensors"


def save(
    folder: Path, kind: str, round_: int, write: Callable[[Path], None], info: dict[str, Any]
) -> Path:
    """Write a `kind` checkpoint ("best" or "last") for `round_` with `write(tmp_folder)` and
    point `folder/kind` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{kind}-round-{round_:04d}"
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    (tmp / INFO_FILE).write_text(json.dumps({"kind": kind, "round": round_, **info}, indent=2))
    _fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    link_tmp = folder / f".{kind}.link-{os.getpid()}"
    link_tmp.unlink(missing_ok=True)
    link_tmp.symlink_to(final.name)
    os.replace(link_tmp, folder / kind)
    for old in folder.glob(f"{kind}-round-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return folder / kind


def read_info(checkpoint: Path) -> dict[str, Any] | None:
    """What a checkpoint holds, or None when there is no complete checkpoint there."""
    try:
        return json.loads((checkpoint / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
