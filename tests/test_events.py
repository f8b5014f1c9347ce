import json

import pytest

from engine.core import events as ev
from engine.core.errors import RunFolderError
from engine.record.run_state import RunState
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


def test_a_flower_node_id_reads_back_whole_however_large():
    joined = ev.stamp(
        ev.make(ev.CLIENT_JOINED, client=0, node_id=2**64 - 1, address="10.0.0.2", host="lab")
    )
    assert ev.parse_line(json.dumps(joined))["node_id"] == 2**64 - 1


@pytest.mark.parametrize("field", ["devices", "clients"])
def test_a_gpu_sample_whose_rows_are_null_is_damage_not_a_crash(field):
    """Found by tests/test_crafted_run_folders.py's fuzzing: null passes every type check."""
    sample = ev.stamp(ev.make(ev.GPU_SAMPLE, devices=[], clients={}))
    sample[field] = None
    with pytest.raises(ValueError, match=f"its '{field}' is not a list or table of rows"):
        ev.parse_line(json.dumps(sample))
