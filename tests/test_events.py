import json

import pytest

from engine import events as ev
from engine.errors import RunFolderError
from engine.run_state import RunState
from tests.factories import simple_run_events, write_run


def test_make_rejects_unknown_types_and_missing_fields():
    with pytest.raises(ValueError, match="unknown event type"):
        ev.make("round_exploded", round=1)
    with pytest.raises(ValueError, match="lacks eval_loss"):
        ev.make(ev.ROUND_DONE, round=1)


def test_stamped_events_carry_version_and_time_first():
    line = ev.encode(ev.stamp(ev.make(ev.NOTICE, message="hi"), now=12.5))
    assert list(json.loads(line))[:3] == ["v", "t", "type"]
    assert json.loads(line)["v"] == ev.SCHEMA_VERSION


def test_a_torn_last_line_is_skipped(tmp_path):
    folder = write_run(tmp_path / "run", simple_run_events())
    path = folder / "events.jsonl"
    complete = ev.read_events(path)
    with open(path, "a") as handle:
        handle.write('{"v":1,"t":2000,"type":"round_do')
    assert ev.read_events(path) == complete


def test_a_corrupt_line_in_the_middle_names_the_line(tmp_path):
    folder = write_run(tmp_path / "run", simple_run_events())
    path = folder / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    path.write_text("".join(lines))
    with pytest.raises(RunFolderError, match=r"events.jsonl:3: not a valid event"):
        ev.read_events(path)


def test_events_from_a_newer_schema_are_refused(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps({"v": ev.SCHEMA_VERSION + 1, "t": 1, "type": "notice", "message": "x"}) + "\n"
    )
    with pytest.raises(RunFolderError, match="newer than this fedtui"):
        ev.read_events(path)


def test_run_state_folds_rounds_clients_and_best_round():
    events = [
        ev.stamp(ev.make(**e), now=100.0 + i)
        for i, e in enumerate(simple_run_events(rounds=((8.0, None), (7.0, 7.5), (7.2, 6.9))))
    ]
    state = RunState.from_events(events)
    assert state.status == "completed"
    assert state.rounds_completed == 2
    assert (state.best_round, state.best_eval_loss) == (1, 7.0)
    assert state.rounds[2].client_train_loss == {0: 6.9, 1: pytest.approx(7.0)}
    assert state.clients[1].last_train_loss == pytest.approx(7.0)
    assert state.elapsed == pytest.approx(len(events) - 1)


def test_run_state_takes_the_best_round_as_the_server_app_judged_it():
    state = RunState.from_events(
        [
            ev.make(ev.ROUND_DONE, round=0, eval_loss=8.0, best_round=0),
            ev.make(ev.ROUND_DONE, round=1, eval_loss=7.0, best_round=1),
            ev.make(ev.ROUND_DONE, round=2, eval_loss=6.9, best_round=1),
        ]
    )  # the server's word holds
    assert (state.best_round, state.best_eval_loss) == (1, 7.0)


def test_a_run_whose_rounds_carry_no_best_round_still_has_one():
    """A run imported from a report's tables has eval losses but no ServerApp judgement."""
    state = RunState.from_events(
        [
            ev.make(ev.ROUND_DONE, round=r, eval_loss=loss)
            for r, loss in enumerate([2.987, 2.076, 2.021, 2.03])
        ]
    )
    assert (state.best_round, state.best_eval_loss) == (2, 2.021)


def test_client_progress_gives_state_step_and_rate():
    state = RunState()
    state.apply(ev.stamp(ev.make(ev.ROUND_STARTED, round=1, clients=1), now=10.0))
    state.apply(
        ev.stamp(
            ev.make(ev.CLIENT_PROGRESS, round=1, client=0, step=1, steps_total=20, loss=5.0),
            now=11.0,
        )
    )
    state.apply(
        ev.stamp(
            ev.make(ev.CLIENT_PROGRESS, round=1, client=0, step=11, steps_total=20, loss=4.0),
            now=13.0,
        )
    )
    client = state.clients[0]
    assert (client.state, client.step, client.steps_total, client.loss) == ("training", 11, 20, 4.0)
    assert client.steps_per_second == pytest.approx(11 / 2.0)


def test_a_client_error_marks_that_client_failed():
    state = RunState()
    state.apply(ev.make(ev.ERROR, message="client 1 failed", client=1, round=1))
    assert state.clients[1].state == "failed"
    assert state.errors == ["client 1 failed"]


def test_a_diverged_loss_is_recorded_as_null_and_folds_without_error():
    nan, inf = float("nan"), float("inf")
    events = [
        ev.stamp(ev.make(**e), now=1.0)
        for e in [
            dict(type_=ev.ROUND_DONE, round=0, eval_loss=8.0),
            dict(type_=ev.CLIENT_ROUND_DONE, round=1, client=0, train_loss=nan, examples=4),
            dict(type_=ev.ROUND_DONE, round=1, eval_loss=nan, train_loss=inf),
            dict(type_=ev.RUN_FINISHED, status="completed", best_eval_loss=inf),
        ]
    ]
    assert [json.loads(ev.encode(e)).get("eval_loss") for e in events[::2]] == [8.0, None]
    assert events[1]["train_loss"] is None and events[3]["best_eval_loss"] is None
    state = RunState.from_events(events)
    assert (state.best_round, state.best_eval_loss, state.rounds_completed) == (0, 8.0, 1)
