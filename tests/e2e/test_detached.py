"""Runs that outlive the terminal: detached, followed by `fedtui attach`, stopped by
`fedtui stop`; a detached run survives its terminal, a leashed one dies with its TUI."""

import os
import signal
import subprocess
import sys
import threading

import aiohttp
import pytest

from engine.record import run_lock
from engine.record.run_folders import read_run
from tests.e2e.test_faults import processes_of
from tests.e2e.test_real_runs import SMALL, alive
from tests.waiting import until, wait_for
from tests.web_server import fedtui_web

pytestmark = pytest.mark.e2e

FEDTUI = [sys.executable, "-m", "tui.cli"]


def settings(rounds):
    return [arg for item in [f"rounds={rounds}", *SMALL] for arg in ("--set", item)]


def started_runs(tmp_path):
    """The run folders whose controller holds them and has recorded the run's start."""
    return [
        lock.parent
        for lock in (tmp_path / "runs").glob("*/controller.pid")
        if (lock.parent / "events.jsonl").is_file()
        and (lock.parent / "events.jsonl").stat().st_size
    ]


def the_run(tmp_path):
    return wait_for(lambda: started_runs(tmp_path), timeout=120)[0]


def assert_nothing_left(controller_pid):
    wait_for(lambda: not alive(controller_pid) and not processes_of(controller_pid), timeout=10)


def test_a_detached_run_is_watched_by_attach_and_ended_by_stop(tmp_path):
    launched = subprocess.run(
        [*FEDTUI, "run", "--headless", "--detach", *settings(3)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stderr
    run_dir = the_run(tmp_path)
    assert f"fedtui attach runs/{run_dir.name}" in launched.stdout
    assert read_run(run_dir).state.rounds_completed == 0  # it returned as the run began
    controller_pid = run_lock.live_controller(run_dir)
    assert controller_pid is not None

    follower = subprocess.Popen(
        [*FEDTUI, "attach", "--headless", str(run_dir)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = []
    threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True).start()
    wait_for(lambda: any(line.startswith("round 1 done") for line in lines), timeout=600)
    assert read_run(run_dir).state.status == "running"  # seen live, not read afterwards

    stopped = subprocess.run(
        [*FEDTUI, "stop", "--wait", str(run_dir)], capture_output=True, text=True, timeout=900
    )
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("run stopped")
    assert follower.wait(timeout=60) == 0
    state = read_run(run_dir).state
    assert state.status == "stopped" and 1 <= state.rounds_completed < 3
    assert any(line.startswith("run stopped") for line in lines)
    assert_nothing_left(controller_pid)


def test_a_detached_run_goes_on_after_its_terminal_is_gone_and_completes(tmp_path):
    terminal = subprocess.Popen(  # a shell that launches the run, then waits for its user
        [
            "bash",
            "-c",
            " ".join([*FEDTUI, "run", "--headless", "--detach", *settings(2)]) + "; sleep 600",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    run_dir = the_run(tmp_path)
    controller_pid = wait_for(lambda: run_lock.live_controller(run_dir), timeout=60)
    os.killpg(terminal.pid, signal.SIGHUP)  # the window closes
    os.killpg(terminal.pid, signal.SIGKILL)
    terminal.wait()

    wait_for(lambda: read_run(run_dir).state.finished, timeout=900, interval=0.5)
    assert read_run(run_dir).state.status == "completed"
    assert_nothing_left(controller_pid)


def test_a_run_started_for_a_tui_ends_with_it_unless_detached(tmp_path):
    tui = subprocess.Popen(  # what `fedtui run` does before its monitor opens
        [
            sys.executable,
            "-c",
            "import sys; from engine.core.config_files import load_config; "
            "from engine.run.controller import RunController; from tui import detached; "
            f"c = RunController(load_config(None, {['rounds=3', *SMALL]!r}), 'runs'); "
            "detached.launch(c, [], resume=False, leashed=True); print('up', flush=True); "
            "sys.stdin.read()",
        ],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert tui.stdout.readline() == "up\n"
    run_dir = the_run(tmp_path)
    controller_pid = run_lock.live_controller(run_dir)
    tui.kill()
    tui.wait()

    wait_for(lambda: read_run(run_dir).state.finished, timeout=60, interval=0.2)
    state = read_run(run_dir).state
    assert state.status == "aborted"
    assert_nothing_left(controller_pid)


async def test_a_run_watched_in_a_browser_page_goes_on_when_the_page_closes(tmp_path):
    """`fedtui web run`: a closed page is a closed terminal window, and the run is detached."""
    with fedtui_web("run", *settings(3), cwd=tmp_path) as served:
        async with aiohttp.ClientSession() as session:
            page = await session.ws_connect(f"{served.base}/ws?token={served.token}")
            (run_dir,) = await until(lambda: started_runs(tmp_path), timeout=120)
            controller_pid = run_lock.live_controller(run_dir)
            shown = b""
            while run_dir.name.encode() not in shown:  # the monitor is up, watching the run
                shown += await page.receive_bytes(timeout=60)
            await page.close()
            await until(lambda: not served.apps(), timeout=30)
        assert run_lock.live_controller(run_dir) == controller_pid
        assert not read_run(run_dir).state.finished

        stopped = subprocess.run(
            [*FEDTUI, "stop", str(run_dir), "--abort", "--wait"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stopped.stdout.startswith("run aborted"), stopped.stderr
        assert read_run(run_dir).state.status == "aborted"
        assert_nothing_left(controller_pid)
