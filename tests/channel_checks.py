"""Checks on a run folder that concern the event channel (engine.net.channel)."""

import os
from pathlib import Path


def assert_key_not_in(run_dir: Path, key: str) -> None:
    """Fail if the channel key (hex, as FEDTUI_EVENTS_KEY holds it) appears in any file under
    `run_dir`, in either case or as its raw bytes. A live run's key is in the environment of
    the processes it started (`psutil.Process(pid).environ()`)."""
    needles = (key.lower().encode(), key.upper().encode(), bytes.fromhex(key))
    checked = 0
    for folder, _, names in os.walk(run_dir):  # does not follow the checkpoint links
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            content = path.read_bytes()
            leaked = [needle for needle in needles if needle in content]
            assert not leaked, f"the event channel key is written in {path}"
            checked += 1
    assert checked, f"no files under {run_dir}: nothing was checked"
