import os
import signal
import subprocess
import sys
import time

import pytest

from engine.record import checkpoints
from tests.waiting import wait_for

CHUNK, CHUNKS = 1 << 20, 24  # a 24 MiB "model", written slowly enough to be killed mid-way

WRITER = f"""
import sys, time
from pathlib import Path
from engine.record import checkpoints

def write(tmp):
    with open(tmp / "weights.bin", "wb") as handle:
        for _ in range({CHUNKS}):
            handle.write(b"x" * {CHUNK})
            handle.flush()
            time.sleep(0.01)

folder = Path(sys.argv[1])
for round_ in range(1, 1000):
    checkpoints.save(folder, "best", round_, write, {{"eval_loss": 1.0 / round_}})
"""


def test_the_link_points_at_the_newest_complete_checkpoint(tmp_path):
    for round_ in (1, 2):
        checkpoints.save(
            tmp_path,
            "best",
            round_,
            lambda tmp, round_=round_: (tmp / "weights.bin").write_bytes(b"w" * round_),
            {"eval_loss": 3.0 - round_},
        )
    assert checkpoints.read_info(tmp_path / "best") == {
        "kind": "best",
        "round": 2,
        "eval_loss": 1.0,
    }
    assert (tmp_path / "best" / "weights.bin").read_bytes() == b"ww"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "best-round-0002"]


def test_a_failed_write_leaves_the_previous_checkpoint_in_place(tmp_path):
    checkpoints.save(tmp_path, "best", 1, lambda tmp: (tmp / "w").write_text("one"), {})

    def broken(tmp):
        (tmp / "w").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoints.save(tmp_path, "best", 2, broken, {})
    assert checkpoints.read_info(tmp_path / "best")["round"] == 1
    assert (tmp_path / "best" / "w").read_text() == "one"


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.31, 0.47, 0.62, 0.9, 1.3])
def test_killing_the_writer_never_leaves_a_partial_checkpoint_behind_the_link(tmp_path, delay):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    # counted from its first write, not from its start (an interpreter starts slowly on a
    # loaded machine): each delay kills it at its own point in the writing
    wait_for(lambda: writer.poll() is not None or any(tmp_path.iterdir()), timeout=60)
    assert writer.poll() is None, "the writer failed before it began writing"
    time.sleep(delay)  # where in the writing to kill it: the parameter under test
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    info = checkpoints.read_info(tmp_path / "best")
    if info is None:  # killed before the first checkpoint was complete: no link at all
        assert not os.path.lexists(tmp_path / "best")
        return
    assert (tmp_path / "best" / "weights.bin").stat().st_size == CHUNK * CHUNKS
    assert os.path.realpath(tmp_path / "best").endswith(f"best-round-{info['round']:04d}")
