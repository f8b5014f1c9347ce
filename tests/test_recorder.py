import json

from engine import events as ev, recorder
from engine.recorder import EventRecorder


def written(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_event_is_stamped_appended_and_handed_to_subscribers_in_order(tmp_path):
    record, seen = EventRecorder(tmp_path / "events.jsonl"), []
    record.subscribe(seen.append)
    record.open()

    record.write(ev.make(ev.NOTICE, message="preparing data"))
    record.write(ev.make(ev.STOP_REQUESTED, source="user"))
    record.close()

    assert [event["type"] for event in written(record.path)] == [ev.NOTICE, ev.STOP_REQUESTED]
    assert seen == written(record.path)
    assert all(event["v"] == ev.SCHEMA_VERSION and event["t"] > 0 for event in seen)


def test_a_failing_subscriber_breaks_neither_the_record_nor_the_other_subscribers(tmp_path):
    record, seen = EventRecorder(tmp_path / "events.jsonl"), []

    def broken_view(event):
        raise RuntimeError("view crashed")

    record.subscribe(broken_view)
    record.subscribe(seen.append)
    record.open()
    record.write(ev.make(ev.NOTICE, message="still recorded"))

    assert len(written(record.path)) == 1 and len(seen) == 1


def test_a_subscriber_may_write_in_turn(tmp_path):
    record = EventRecorder(tmp_path / "events.jsonl")

    def stop_on_round_done(event):
        if event["type"] == ev.ROUND_DONE:
            record.write(ev.make(ev.STOP_REQUESTED, source="user"))

    record.subscribe(stop_on_round_done)
    record.open()
    record.write(ev.make(ev.ROUND_DONE, round=1, eval_loss=2.0))

    assert [event["type"] for event in written(record.path)] == [ev.ROUND_DONE, ev.STOP_REQUESTED]


def test_a_finished_round_is_synced_to_disk(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(recorder.os, "fsync", synced.append)
    record = EventRecorder(tmp_path / "events.jsonl")
    record.open()

    record.write(ev.make(ev.NOTICE, message="not synced"))
    assert synced == []
    record.write(ev.make(ev.ROUND_DONE, round=1, eval_loss=2.0))
    assert len(synced) == 1


def test_reopening_a_record_drops_a_torn_last_line_and_appends_after_the_last_event(tmp_path):
    path = tmp_path / "events.jsonl"
    whole = ev.encode(ev.stamp(ev.make(ev.NOTICE, message="whole")))
    path.write_text(whole + '{"v":1,"t":5,"type":"rou')
    record = EventRecorder(path)

    record.open()
    record.write(ev.make(ev.NOTICE, message="after the crash"))
    record.close()

    assert [event["message"] for event in ev.read_events(path)] == ["whole", "after the crash"]
