"""Files of a run folder replaced whole, never rewritten in place: a crash or a full disk while one
is written leaves the previous version (`replace_text`), and what is renamed reaches the disk
(`sync_folder`: a rename is an entry of its folder, lost in a power cut unless the folder is
synced).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CONFIG_FILE = "config.toml"


def replace_text(path: Path, text: str) -> bool:
    """Make `path` hold `text`: written to a temporary file beside it, synced, renamed over it and
    the folder synced. A file that already holds `text` is left alone (False)."""
    data = text.encode("utf-8")
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return False
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    return True


def sync_folder(folder: Path) -> None:
    """fsync a folder: the names created, renamed or removed in it reach the disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
