"""Sweeps (engine.run.sweep): the grid's members, run one or N at a time, stopped between members,
recorded, listed and exported."""

import json
import threading

import pytest

import engine.run.sweep
from engine.core import events as ev
from engine.core.errors import ConfigError
from engine.record.run_folders import SWEEP_FILE
from engine.run.sweep import Sweep, plan_members, read_sweep
from tests.factories import simple_run_events, write_run
from tests.waiting import wait_for


class FakeRun:
    """A member's RunController: runs until the test ends it (or at once)."""

    started: list[str] = []
    live = 0
    most_live = 0

    def __init__(self, config, runs_dir, run_id, fork=None):
        self.config, self.run_id, self.run_dir = config, run_id, runs_dir / run_id
        self.status, self.subscribers = "created", []
        self.done = threading.Event()

    def subscribe(self, subscriber):
        self.subscribers.append(subscriber)

    def check_inputs(self, progress=None):
        pass

    def start(self):
        FakeRun.started.append(self.run_id)
        FakeRun.live += 1
        FakeRun.most_live = max(FakeRun.most_live, FakeRun.live)
        self.status = "running"
        for subscriber in self.subscribers:
            subscriber(ev.make(ev.RUN_STARTED, run_id=self.run_id, config={}))
        return self

    def end(self, status="completed"):
        self.status = status
        FakeRun.live -= 1
        self.done.set()

    def request_stop(self, source="user"):
        self.end("stopped")

    def abort(self):
        self.end("aborted")

    @property
    def finished(self):
        return self.done.is_set()

    def wait(self, timeout=None):
        self.done.wait(timeout)
        return self.status if self.done.is_set() else None


@pytest.fixture
def fake_runs(monkeypatch):
    FakeRun.started, FakeRun.live, FakeRun.most_live = [], 0, 0
    monkeypatch.setattr(engine.run.sweep, "RunController", FakeRun)
    return FakeRun


def members_of(sweep):
    return {name: sweep.controllers[name] for name in FakeRun.started}


def test_the_grids_multiply_into_members_named_by_their_values():
    members = plan_members(
        None, ["rounds=2"], [("proximal_mu", ["0.01", "1.0"]), ("seed", ["1", "2"])]
    )

    assert [m.name for m in members] == [
        "proximal_mu=0.01,seed=1",
        "proximal_mu=0.01,seed=2",
        "proximal_mu=1.0,seed=1",
        "proximal_mu=1.0,seed=2",
    ]
    assert [(m.config.proximal_mu, m.config.seed, m.config.rounds) for m in members][1] == (
        0.01,
        2,
        2,
    )


def test_members_run_one_after_another_and_the_record_follows(tmp_path, fake_runs):
    sweep = Sweep.plan(None, [], ["seed=1,2,3"], tmp_path).start()

    for expected in ("seed=1", "seed=2", "seed=3"):
        wait_for(lambda name=expected: name in fake_runs.started, timeout=60)
        assert fake_runs.live == 1
        record = read_sweep(sweep.sweep_dir)
        assert {m["name"]: m["status"] for m in record.members}[expected] == "running"
        sweep.controllers[expected].end()

    assert sweep.wait(10) == "completed"
    record = read_sweep(sweep.sweep_dir)
    assert record.status == "completed"
    assert [m["status"] for m in record.members] == ["completed"] * 3
    assert record.grid == [["seed", ["1", "2", "3"]]]


def test_parallel_members_run_n_at_a_time(tmp_path, fake_runs):
    sweep = Sweep.plan(None, [], ["seed=1,2,3,4"], tmp_path, parallel=2).start()
    while not sweep.finished:
        wait_for(
            lambda: sweep.finished or any(not c.finished for c in members_of(sweep).values()),
            timeout=60,
        )
        for controller in list(members_of(sweep).values()):
            if not controller.finished:
                controller.end()
    assert fake_runs.most_live == 2 and len(fake_runs.started) == 4


def test_a_stopped_sweep_ends_its_member_after_the_round_and_starts_no_other(tmp_path, fake_runs):
    sweep = Sweep.plan(None, [], ["seed=1,2,3"], tmp_path).start()
    wait_for(lambda: fake_runs.started == ["seed=1"], timeout=60)

    sweep.request_stop()

    assert sweep.wait(10) == "stopped"
    assert fake_runs.started == ["seed=1"]
    statuses = [m["status"] for m in read_sweep(sweep.sweep_dir).members]
    assert statuses == ["stopped", "pending", "pending"]


def test_a_member_event_reaches_subscribers_under_its_name(tmp_path, fake_runs):
    heard = []
    sweep = Sweep.plan(None, [], ["seed=1,2"], tmp_path)
    sweep.subscribe(lambda member, event: heard.append((member, event["type"])))
    sweep.start()
    wait_for(lambda: heard == [("seed=1", ev.RUN_STARTED)], timeout=60)
    sweep.abort()
    assert sweep.wait(10) == "aborted"


def test_a_value_that_is_not_a_config_value_names_its_member():
    with pytest.raises(ConfigError, match="sweep member rounds=two: config key 'rounds'"):
        Sweep.plan(None, [], ["rounds=2,two"], "runs")


def test_runs_and_export_show_a_recorded_sweep_member_by_member(tmp_path, capsys):
    from tui import cli

    sweep_dir = tmp_path / "sweep-1"
    for name, final in (("seed=1", 6.4), ("seed=2", 6.9)):
        write_run(
            sweep_dir / name, simple_run_events(run_id=name, rounds=((8.0, None), (final, 7)))
        )
    record = {
        "sweep_id": "sweep-1",
        "grid": [["seed", ["1", "2"]]],
        "base": {"config": None, "overrides": []},
        "members": [{"name": "seed=1", "status": "completed"}, {"name": "seed=2"}],
        "status": "completed",
    }
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(record))

    assert cli.main(["runs", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "sweep sweep-1 (completed, 2 members, seed=1,2):" in listed
    assert listed.count("completed      1/1") == 2

    assert cli.main(["export", str(sweep_dir), "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [(m["member"], m["final_eval_loss"]) for m in exported["members"]] == [
        ("seed=1", 6.4),
        ("seed=2", 6.9),
    ]
