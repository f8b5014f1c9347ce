"""Following a run another process controls: every viewer sees every event as it is recorded,
and a run whose controller is gone is never shown as running."""

import subprocess
import sys

import pytest

from engine.core import events as ev
from engine.core.errors import FedtuiError
from engine.record import run_lock
from engine.record.recorder import EventRecorder
from engine.record.run_folders import EVENTS_FILE
from engine.run.followed_run import FollowedRun
from engine.system.leash import Leash
from tests.waiting import wait_for
from tui.cli import main


def recorder_of(run_dir):
    run_dir.mkdir(exist_ok=True)
    recorder = EventRecorder(run_dir / EVENTS_FILE)
    recorder.open()
    return recorder


def viewer(run_dir):
    seen = []
    run = FollowedRun(run_dir)
    run.subscribe(seen.append)
    return run, seen


def test_two_viewers_attached_at_once_both_see_every_event_in_order(tmp_path):
    run_dir = tmp_path / "run"
    recorder = recorder_of(run_dir)
    held = run_lock.hold(run_dir)  # this process plays the controller
    recorder.write(ev.make(ev.RUN_STARTED, run_id="run", config={"rounds": 50}))
    first, first_seen = viewer(run_dir)
    second, second_seen = viewer(run_dir)
    first.start()
    second.start()
    for number in range(50):  # written while the viewers read, lines split anywhere
        recorder.write(ev.make(ev.ROUND_STARTED, round=number + 1))
        recorder.write(ev.make(ev.ROUND_DONE, round=number + 1, eval_loss=1.0 / (number + 1)))
    wait_for(lambda: len(first_seen) == len(second_seen) == 101, timeout=30)
    assert not first.finished  # the record has no end yet
    recorder.write(ev.make(ev.RUN_FINISHED, status="completed"))
    recorder.close()
    held.release()
    assert first.wait(30) == second.wait(30) == "completed"
    written = ev.read_events(run_dir / EVENTS_FILE)
    assert first_seen == second_seen == written


def test_a_resumed_record_is_followed_past_its_first_end(tmp_path):
    run_dir = tmp_path / "run"
    recorder = recorder_of(run_dir)
    recorder.write(ev.make(ev.RUN_STARTED, run_id="run", config={"rounds": 1}))
    recorder.write(ev.make(ev.RUN_FINISHED, status="stopped"))
    held = run_lock.hold(run_dir)
    recorder.write(ev.make(ev.RUN_RESUMED, from_round=1, config={"rounds": 3}))
    run, seen = viewer(run_dir)
    run.start()
    wait_for(lambda: len(seen) == 3, timeout=30)
    assert not run.finished and run.status == "running"
    recorder.write(ev.make(ev.RUN_FINISHED, status="completed"))
    held.release()
    assert run.wait(30) == "completed"


@pytest.mark.parametrize(
    "served, goes_on", [(False, "fedtui run --resume"), (True, "fedtui serve --resume")]
)
def test_a_run_whose_controller_died_is_shown_as_failed_not_running(tmp_path, served, goes_on):
    run_dir = tmp_path / "run"
    recorder = recorder_of(run_dir)
    recorder.write(ev.make(ev.RUN_STARTED, run_id="run", config={"rounds": 3}))
    if served:
        recorder.write(ev.make(ev.CLIENT_JOINED, client=0, node_id=7, address="10.0.0.9"))
    recorder.close()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (run_dir / run_lock.LOCK_FILE).write_text(f"{dead.stdout.strip()} 1.0\n")

    run, seen = viewer(run_dir)
    assert run.start().wait(30) == "failed"
    assert "controller is gone" in seen[-2]["message"]
    assert f"{goes_on} {run_dir} goes on from its last model" in seen[-2]["message"]
    assert len(ev.read_events(run_dir / EVENTS_FILE)) == len(seen) - 2  # the end is not written


def test_attach_refuses_a_stale_run_folder_as_not_running(tmp_path, capsys):
    run_dir = tmp_path / "run"
    recorder = recorder_of(run_dir)
    recorder.write(ev.make(ev.RUN_STARTED, run_id="run", config={"rounds": 3}))
    recorder.close()
    assert main(["attach", str(run_dir)]) == 2
    assert "is not running (interrupted)" in capsys.readouterr().err
    assert main(["stop", str(run_dir)]) == 2
    assert "is not running" in capsys.readouterr().err


def test_attach_without_a_run_needs_a_running_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["attach"]) == 2
    assert "no running run in runs" in capsys.readouterr().err


def test_a_leash_holder_that_ended_is_gone_even_before_it_is_reaped():
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    leash = Leash(holder.pid)
    assert not leash.holder_gone
    holder.stdin.close()
    wait_for(lambda: leash.holder_gone, timeout=30)  # a zombie until wait() below
    holder.wait()
    assert leash.holder_gone
    with pytest.raises(FedtuiError, match="is gone"):
        Leash(holder.pid)


def test_a_viewer_stops_reading_when_closed(tmp_path):
    run_dir = tmp_path / "run"
    recorder_of(run_dir).write(ev.make(ev.RUN_STARTED, run_id="run", config={}))
    held = run_lock.hold(run_dir)
    run, _ = viewer(run_dir)
    run.start()
    run.close()
    assert run.wait(30) == "running"  # the viewer is done; the run is not
    held.release()
