"""A run whose supervisor fails before Flower is up still ends as a run: its record says why,
nothing it started is left, its folder is free, and `wait()` returns (engine.run.supervisor)."""

import errno

import engine.run.supervisor
from engine.core import events as ev
from engine.core.config import RunConfig
from engine.record import run_lock
from engine.record.run_folders import EVENTS_FILE
from engine.run.controller import RunController


def test_a_launcher_that_cannot_be_built_fails_the_run_with_its_reason(tmp_path, monkeypatch):
    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/fedtui-flwr-1")

    monkeypatch.setattr(engine.run.supervisor, "FlowerDeployment", no_room)
    controller = RunController(RunConfig(), runs_dir=tmp_path).start()

    assert controller.wait(timeout=120) == "failed"
    events = ev.read_events(controller.run_dir / EVENTS_FILE)
    errors = [e["message"] for e in events if e["type"] == ev.ERROR]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert events[-1]["type"] == ev.RUN_FINISHED and events[-1]["status"] == "failed"
    assert run_lock.live_controller(controller.run_dir) is None
    assert controller.pids() == []
