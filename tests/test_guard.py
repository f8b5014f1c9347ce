"""Processes Flower starts for a run end with the controller, however it ends
(engine.system.guard)."""

import os
import pwd
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from engine.core.process_env import CONTROLLER_PID_ENV
from engine.flower import home as flower_home
from engine.flower.home import ENGINE_PARENT
from engine.system import guard
from tests.waiting import wait_for

# A stand-in controller: starts a watched process in a session of its own (as Flower's
# SuperExec does, so no process-group kill reaches it), says its PID, and waits to be killed.
CONTROLLER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    env = dict(os.environ, {env}=str(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env, start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(600)
    """
).format(env=CONTROLLER_PID_ENV)

WATCHED = textwrap.dedent(
    """
    import sys, time
    from engine.system.guard import watch_controller
    watch_controller()
    print("watching", flush=True)
    time.sleep(600)
    """
)


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_watched_process_exits_within_seconds_of_its_controllers_sigkill(tmp_path):
    controller = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, WATCHED], stdout=subprocess.PIPE, text=True
    )
    watched = int(controller.stdout.readline())
    try:
        assert alive(watched)
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait()
        wait_for(lambda: not alive(watched), timeout=10)
    finally:
        if alive(watched):
            os.kill(watched, signal.SIGKILL)


def test_without_a_controller_in_the_environment_nothing_is_watched(monkeypatch):
    monkeypatch.delenv(CONTROLLER_PID_ENV, raising=False)
    guard.watch_controller()  # returns, starts nothing: the process lives on
    assert "controller-watch" not in [thread.name for thread in threading.enumerate()]


def test_a_guard_script_runs_flowers_own_program_in_its_own_process(tmp_path):
    program = tmp_path / "flower-superexec"
    program.write_text(guard.script(sys.executable, ENGINE_PARENT, "flower-superexec"))
    program.chmod(0o755)
    env = dict(os.environ, **{CONTROLLER_PID_ENV: str(os.getpid())})
    completed = subprocess.run(
        [str(program), "--help"], env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "--runtime-api-address" in completed.stdout  # Flower's SuperExec answered


def test_a_later_run_removes_the_temporary_folders_of_a_killed_fedtui(tmp_path):
    """SIGKILL skips a controller's cleanup; what it left in the temporary folder goes with the
    next run (engine.flower.home.remove_orphans), and nothing of a live process does."""
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=ENGINE_PARENT)
    maker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from engine.flower.home import temp_folder;"
            "print(temp_folder('flwr'), flush=True); time.sleep(600)",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        orphan = Path(maker.stdout.readline().strip())
        assert orphan.parent == tmp_path and orphan.name.startswith(f"fedtui-flwr-{maker.pid}-")
        (orphan / "state.db").write_text("Flower's state")
        live = tmp_path / f"fedtui-ray-{os.getpid()}-x"
        unrelated = tmp_path / f"fedtui-bench-{maker.pid}-x"
        live.mkdir()
        unrelated.mkdir()

        flower_home.remove_orphans(tmp_path)
        assert orphan.is_dir()  # its maker is alive
    finally:
        maker.kill()
        maker.wait()
    flower_home.remove_orphans(tmp_path)

    assert sorted(tmp_path.iterdir()) == sorted([live, unrelated])


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_leftover_name_is_no_proof_another_users_folder_or_a_link_stays(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # a maker that is gone
    theirs = tmp_path / f"fedtui-flwr-{gone.pid}-theirs"
    theirs.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    kept = tmp_path / "kept"
    kept.mkdir()
    link = tmp_path / f"fedtui-join-{gone.pid}-link"
    link.symlink_to(kept)
    mine = tmp_path / f"fedtui-ray-{gone.pid}-mine"
    mine.mkdir()

    flower_home.remove_orphans(tmp_path)

    assert sorted(tmp_path.iterdir()) == sorted([theirs, kept, link])
