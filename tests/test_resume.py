import dataclasses
import errno
import os
import threading

import pytest

import engine.run.supervisor
from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.config_files import to_toml
from engine.core.errors import ConfigError, FedtuiError
from engine.record import checkpoints, run_lock
from engine.run.controller import RunController
from engine.run.resume import resume_point
from tests.factories import write_run


def recorded_run(
    folder, status="stopped", rounds=5, last_round=2, eval_losses=(3.0, 2.5, 2.7), served=False
):
    """A run folder whose record ends with `status` and whose last checkpoint is `last_round`;
    a `served` one waited for its clients to join from other hosts (`fedtui serve`)."""
    config = dataclasses.replace(RunConfig(), rounds=rounds)
    events = [dict(type_=ev.RUN_STARTED, run_id=folder.name, config=config.to_dict())]
    if served:  # both clients joined at once: nobody was waited for
        events += [
            dict(type_=ev.CLIENT_JOINED, client=client, node_id=client + 7, address="10.0.0.9")
            for client in (0, 1)
        ]
    best = 0
    for number, loss in enumerate(eval_losses):
        best = number if loss < eval_losses[best] else best
        events.append(
            dict(
                type_=ev.ROUND_DONE,
                round=number,
                eval_loss=loss,
                best_round=best,
                rounds_without_improvement=number - best,
            )
        )
    events.append(dict(type_=ev.RUN_FINISHED, status=status))
    write_run(folder, events)
    (folder / "config.toml").write_text(to_toml(config))
    if last_round is not None:
        checkpoints.save_round(folder / "checkpoints", last_round, lambda tmp: None, {})
    return folder


def test_a_stopped_run_goes_on_from_its_last_model_and_early_stopping_state(tmp_path):
    run = recorded_run(tmp_path / "r1", last_round=2)

    config, state = resume_point(run)

    assert config.rounds == 5
    assert state == {
        "round": 2,
        "best_round": 1,
        "best_eval_loss": 2.5,
        "rounds_without_improvement": 1,
        "best_pass_at_1": None,
    }


@pytest.mark.parametrize("status", ["aborted", "failed"])
def test_an_aborted_or_failed_run_may_be_resumed_too(tmp_path, status):
    _, state = resume_point(recorded_run(tmp_path / "r1", status=status))

    assert state["round"] == 2


def test_a_completed_run_goes_on_only_with_more_rounds(tmp_path):
    run = recorded_run(tmp_path / "r1", status="completed", last_round=3, rounds=3)
    with pytest.raises(FedtuiError, match="already has 3 of 3 rounds; --set rounds=N"):
        resume_point(run)

    config, state = resume_point(run, ["rounds=5"])

    assert (config.rounds, state["round"]) == (5, 3)


def test_a_run_without_a_saved_global_model_cannot_be_resumed(tmp_path):
    with pytest.raises(FedtuiError, match="no saved global model"):
        resume_point(recorded_run(tmp_path / "r1", last_round=None))


def test_rounds_and_early_stopping_may_change_on_resume(tmp_path):
    run = recorded_run(tmp_path / "r1", rounds=2)

    config, _ = resume_point(run, ["rounds=4", "early_stopping.patience=3"])

    assert config.rounds == 4 and config.early_stopping.patience == 3


def test_anything_else_would_make_it_a_different_run_and_is_refused(tmp_path):
    with pytest.raises(
        ConfigError,
        match="--set learning_rate=0.1: a resumed run can only change rounds, round_timeout",
    ):
        resume_point(recorded_run(tmp_path / "r1"), ["learning_rate=0.1"])


def test_a_run_that_already_has_all_its_rounds_asks_for_more(tmp_path):
    with pytest.raises(FedtuiError, match="already has 2 of 2 rounds; --set rounds=N"):
        resume_point(recorded_run(tmp_path / "r1", rounds=2, last_round=2))


def interrupted_run(folder):
    """The record of a controller killed after round 2: no `run_finished`."""
    run = recorded_run(folder, last_round=2)
    events = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(events[:-1]))
    return run


def test_a_run_whose_controller_was_killed_goes_on_from_its_last_model(tmp_path):
    run = interrupted_run(tmp_path / "r1")
    (run / run_lock.LOCK_FILE).write_text("999999999 12.5\n")  # a controller long gone

    _, state = resume_point(run)

    assert state["round"] == 2


def test_a_run_whose_controller_is_alive_cannot_be_resumed_beside_it(tmp_path):
    run = interrupted_run(tmp_path / "r1")
    held = run_lock.hold(run)

    with pytest.raises(FedtuiError, match=f"r1 is running \\(controller pid {os.getpid()}\\)"):
        resume_point(run)
    held.release()
    assert resume_point(run)[1]["round"] == 2


def test_a_run_goes_on_the_way_it_began_served_to_other_hosts_or_on_this_machine(tmp_path):
    served = recorded_run(tmp_path / "served", served=True)
    local = recorded_run(tmp_path / "local")

    with pytest.raises(FedtuiError, match="was served to clients on other hosts: go on with "):
        resume_point(served)
    with pytest.raises(FedtuiError, match="was trained by clients on this machine: go on with "):
        resume_point(local, served=True)
    assert resume_point(served, served=True)[1]["round"] == 2


def test_two_resumes_of_one_run_cannot_both_go_on(tmp_path, monkeypatch):
    """Both checked the run before either started (two `fedtui run --resume` at once): the one
    that starts second is refused, naming the first's PID, and writes nothing; once the first
    has ended, the run may go on again."""
    run = recorded_run(tmp_path / "r1")
    flower_may_start = threading.Event()

    def flower_that_fails_when_let(*args, **kwargs):  # the first holds the run until then
        flower_may_start.wait(120)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.run.supervisor, "FlowerDeployment", flower_that_fails_when_let)
    first, second = RunController.resume(run), RunController.resume(run)
    first.start()
    with pytest.raises(FedtuiError, match=f"r1 is running \\(controller pid {os.getpid()}\\)"):
        second.start()
    flower_may_start.set()
    assert first.wait(timeout=120) == "failed"

    later = RunController.resume(run).start()  # the lock went with the first controller

    assert later.wait(timeout=120) == "failed"
    resumed = [e for e in ev.read_events(run / "events.jsonl") if e["type"] == ev.RUN_RESUMED]
    assert len(resumed) == 2  # the first's and the later one's, none from the refused one
