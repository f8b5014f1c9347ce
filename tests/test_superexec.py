"""fedtui's SuperExec is Flower's, asking for no task while one it started runs
(engine.flower.superexec): its loop's sleep lasts until that task's process ends."""

import subprocess
import sys
import threading
import time

import psutil
import pytest
from flwr.supercore.superexec import run_superexec

from engine.flower import home as flower_home, superexec
from tests.waiting import wait_for

CEILING = 30.0


@pytest.fixture
def task():
    """A child process standing for a task SuperExec launched: it runs until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    yield child
    child.stdin.close()
    child.wait(timeout=CEILING)


def test_while_a_task_runs_the_loops_sleep_lasts_until_the_task_ends(task, monkeypatch):
    monkeypatch.setattr(superexec, "BUSY_WAIT_S", 2 * CEILING)
    assert task.pid in superexec.running_children()
    sleep = threading.Thread(target=superexec.SleepsWhileBusy().sleep, args=(0.01,))
    sleep.start()

    sleep.join(timeout=1.0)
    assert sleep.is_alive()  # Flower's 0.01 s are long over: it waits for the task
    task.stdin.close()  # the task ends
    sleep.join(timeout=CEILING)
    assert not sleep.is_alive()


def test_a_task_that_ended_unreaped_is_not_waited_for():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])  # Flower keeps no handle to reap
    wait_for(lambda: psutil.Process(ended.pid).status() == psutil.STATUS_ZOMBIE, timeout=CEILING)
    assert ended.pid not in superexec.running_children()

    started = time.monotonic()
    superexec.SleepsWhileBusy().sleep(0.2)
    assert time.monotonic() - started >= 0.2  # Flower's own sleep, not a spin on the ended task
    ended.wait()


def test_the_guard_of_flower_superexec_swaps_the_loops_sleep_before_flower_runs(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(run_superexec, "time", time)  # put back after the test
    flower_home.write_guards(tmp_path)
    guard = (tmp_path / flower_home.GUARDS / "flower-superexec").read_text()
    prelude = flower_home.PRELUDES["flower-superexec"]
    assert guard.index(prelude) < guard.index("run_guarded(")

    exec(prelude, {})  # what the guard runs first, in this process

    assert isinstance(run_superexec.time, superexec.SleepsWhileBusy)
    assert run_superexec.time.monotonic is time.monotonic  # all but sleep is the real module
