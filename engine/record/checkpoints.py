"""Checkpoints in a run folder, written so that a crash never leaves a half-written one in place.

    checkpoints/round-0003/              the global model after round 3 (its trainable weights,
                                         and what the server's strategy keeps between rounds)
    checkpoints/last -> round-0005/      the latest round (what `--resume` starts from)
    checkpoints/best -> best-round-0003/ the best global model so far (save_pretrained format)

Every round's folder is kept (`keep_checkpoints = "all"`: any round can be forked), or only the
last and the best round's (`"best-last"`). Each checkpoint is written into a temporary folder,
renamed to its final name (an atomic rename), and only then is a link switched to it (an atomic
replace). A reader following a link therefore always finds a complete checkpoint;
`fedtui-checkpoint.json`, written last, says which round and loss it holds. A checkpoint that
cannot be written whole (a full disk) leaves no temporary folder behind, nor do the leftovers of
a process killed while writing one outlive the next checkpoint; the folder is synced after every
rename, so that the names reach the disk with the files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from engine.record.durable import sync_folder

INFO_FILE = "fedtui-checkpoint.json"
WEIGHTS_FILE = "model.safetensors"
SERVER_STATE_FILE = "server_state.safetensors"  # a strategy's state between rounds, if any
LAST, BEST = "last", "best"
_ROUND = re.compile(r"round-(\d{4,})")
_LEFTOVER = re.compile(r"\.(?:(?:best-)?round-\d{4,}\.tmp|(?:last|best)\.link)-\d+")


def save_round(
    folder: Path, round_: int, write: Callable[[Path], None], info: dict[str, Any]
) -> Path:
    """Write round `round_`'s checkpoint with `write(tmp_folder)` and point `last` at it."""
    final = _write(folder, f"round-{round_:04d}", round_, "round", write, info)
    _point(folder, LAST, final)
    return final


def save_best(
    folder: Path, round_: int, write: Callable[[Path], None], info: dict[str, Any]
) -> Path:
    """Write the best model so far (round `round_`) and point `best` at it; the previous best
    goes."""
    final = _write(folder, f"best-round-{round_:04d}", round_, BEST, write, info)
    _point(folder, BEST, final)
    for old in folder.glob("best-round-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def keep_rounds(folder: Path, rounds: Iterable[int]) -> None:
    """Remove every round's checkpoint but those of `rounds`."""
    kept = set(rounds)
    for number, path in saved_rounds(folder).items():
        if number not in kept:
            shutil.rmtree(path, ignore_errors=True)


def saved_rounds(folder: Path) -> dict[int, Path]:
    """The rounds whose checkpoint is complete, and where: every round folder, and the round
    `last` holds (in a run recorded before round folders, its only one)."""
    found = {}
    for path in sorted(folder.glob("round-*")) if folder.is_dir() else []:
        match = _ROUND.fullmatch(path.name)
        info = read_info(path)
        if match and info is not None and info["round"] == int(match[1]):
            found[info["round"]] = path
    last = read_info(folder / LAST)
    if last is not None:
        found.setdefault(last["round"], (folder / LAST).resolve())
    return dict(sorted(found.items()))


def read_info(checkpoint: Path) -> dict[str, Any] | None:
    """What a checkpoint holds, or None when there is no complete checkpoint there."""
    try:
        info = json.loads((checkpoint / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("round"), int) else None


def _write(
    folder: Path,
    name: str,
    round_: int,
    kind: str,
    write: Callable[[Path], None],
    info: dict[str, Any],
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)
    final = folder / name
    tmp = folder / f".{name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
        write(tmp)
        (tmp / INFO_FILE).write_text(json.dumps({"kind": kind, "round": round_, **info}, indent=2))
        _fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sync_folder(folder)
    return final


def remove_leftovers(folder: Path) -> None:
    """The temporary folders and links of checkpoints never finished (a process killed while
    writing one): only one process writes a run's checkpoints at a time (its controller's lock)."""
    for path in folder.glob(".*"):
        if _LEFTOVER.fullmatch(path.name):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _point(folder: Path, link: str, target: Path) -> None:
    link_tmp = folder / f".{link}.link-{os.getpid()}"
    link_tmp.unlink(missing_ok=True)
    try:
        link_tmp.symlink_to(target.name)
        os.replace(link_tmp, folder / link)
    except BaseException:
        link_tmp.unlink(missing_ok=True)
        raise
    sync_folder(folder)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
