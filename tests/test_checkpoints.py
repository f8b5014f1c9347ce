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
    checkpoints.save_best(folder, round_, write, {{"eval_loss": 1.0 / round_}})
"""


def test_the_link_points_at_the_newest_complete_checkpoint(tmp_path):
    for round_ in (1, 2):
        checkpoints.save_best(
            tmp_path,
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
    checkpoints.save_best(tmp_path, 1, lambda tmp: (tmp / "w").write_text("one"), {})

    def broken(tmp):
        (tmp / "w").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoints.save_best(tmp_path, 2, broken, {})
    assert checkpoints.read_info(tmp_path / "best")["round"] == 1
    assert (tmp_path / "best" / "w").read_text() == "one"


def test_a_failed_write_leaves_no_temporary_folder_behind(tmp_path):
    def disk_full(tmp):
        (tmp / "w").write_text("half")
        raise OSError(28, "No space left on device")

    for save in (checkpoints.save_best, checkpoints.save_round):
        with pytest.raises(OSError, match="No space left"):
            save(tmp_path, 1, disk_full, {})
    assert list(tmp_path.iterdir()) == []


def test_the_leftovers_of_a_killed_writer_go_with_the_next_checkpoint(tmp_path):
    killed = 4194999  # the PID of a writer killed mid-way
    for name in (f".round-0002.tmp-{killed}", f".best-round-0002.tmp-{killed}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / checkpoints.WEIGHTS_FILE).write_bytes(b"half")
    (tmp_path / f".last.link-{killed}").symlink_to("round-0002")
    (tmp_path / ".notes").write_text("not fedtui's: stays")

    checkpoints.save_round(tmp_path, 3, write_weights(3), {})

    assert sorted(path.name for path in tmp_path.iterdir()) == [".notes", "last", "round-0003"]


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


def write_weights(round_):
    return lambda tmp: (tmp / checkpoints.WEIGHTS_FILE).write_bytes(b"w" * round_)


def test_every_round_is_kept_and_last_points_at_the_newest(tmp_path):
    for round_ in (0, 1, 2):
        checkpoints.save_round(tmp_path, round_, write_weights(round_), {"eval_loss": 1.0})

    assert list(checkpoints.saved_rounds(tmp_path)) == [0, 1, 2]
    assert checkpoints.read_info(tmp_path / "last")["round"] == 2
    assert (tmp_path / "last" / checkpoints.WEIGHTS_FILE).read_bytes() == b"ww"


def test_best_last_keeps_only_the_rounds_it_names(tmp_path):
    for round_ in (0, 1, 2, 3):
        checkpoints.save_round(tmp_path, round_, write_weights(round_), {})
        checkpoints.keep_rounds(tmp_path, [round_, 1])  # round 1 the best

    assert list(checkpoints.saved_rounds(tmp_path)) == [1, 3]
    assert checkpoints.read_info(tmp_path / "last")["round"] == 3


def test_a_run_recorded_before_round_folders_offers_its_last_round(tmp_path):
    old = tmp_path / "last-round-0004"  # as fedtui wrote `last` before
    old.mkdir()
    (old / checkpoints.INFO_FILE).write_text('{"kind": "last", "round": 4}')
    (tmp_path / "last").symlink_to(old.name)

    assert checkpoints.saved_rounds(tmp_path) == {4: old}
    assert checkpoints.saved_rounds(tmp_path / "missing") == {}
