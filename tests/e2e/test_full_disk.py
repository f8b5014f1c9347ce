"""A run whose disk fills up: it ends, as failed with the reason, every process ended, and the files
it had written (its config.toml) as they were."""

import errno
import os
import subprocess
import threading

import pytest

from engine.core import events as ev
from engine.core.config_files import load_config, to_toml
from tests.e2e.test_real_runs import alive, start

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root"),
]

SMALL = ["rounds=2", "samples_per_client=32", "eval_samples=32", "generation_prompts=[]"]


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB filesystem of its own, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder):
    """Write a file into `folder` until its filesystem has no space left."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * (1 << 16))
        except OSError as err:
            assert err.errno == errno.ENOSPC


def test_a_run_whose_disk_fills_up_ends_failed_with_the_reason_and_its_config_intact(small_disk):
    filled = threading.Event()

    def fill_after_round_1(controller, event):
        if event["type"] == ev.ROUND_DONE and event["round"] == 1 and not filled.is_set():
            fill(small_disk)
            filled.set()

    controller, seen = start(small_disk, SMALL, on_event=fill_after_round_1)
    config_toml = (controller.run_dir / "config.toml").read_text()

    status = controller.wait(600)

    assert status == "failed"
    assert filled.is_set()
    errors = [e["message"] for e in seen if e["type"] == ev.ERROR]
    assert any("No space left on device" in message for message in errors), errors
    assert seen[-1]["type"] == ev.RUN_FINISHED and seen[-1]["status"] == "failed"
    assert [pid for pid in controller.pids() if alive(pid)] == []
    assert (controller.run_dir / "config.toml").read_text() == config_toml
    assert config_toml == to_toml(controller.config)
    assert load_config(controller.run_dir / "config.toml") == controller.config
