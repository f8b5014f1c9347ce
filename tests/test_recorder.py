import json
import multiprocessing
import os
import random
import signal
import stat

from engine.core import events as ev
from engine.record import recorder
from engine.record.recorder import EventRecorder
from engine.record.run_folders import open_run, read_run_events, sample_runs_folder
from engine.record.run_state import RunState
from tests.waiting import wait_for


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


def test_each_round_is_on_disk_before_the_next_round_starts(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    on_disk_at_each_sync = []

    def fsync(descriptor):
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            on_disk_at_each_sync.append([event["type"] for event in ev.read_events(path)])

    monkeypatch.setattr(recorder.os, "fsync", fsync)
    record = EventRecorder(path)
    record.open()
    one_round = [
        ev.make(ev.ROUND_STARTED, round=1, clients=1),
        ev.make(ev.CLIENT_PROGRESS, round=1, client=0, step=1, steps_total=1, loss=2.5),
        ev.make(ev.CLIENT_ROUND_DONE, round=1, client=0, train_loss=2.5, examples=8),
        ev.make(ev.CHECKPOINT_SAVED, round=1, kind="best", path="checkpoints/best"),
        ev.make(ev.ROUND_DONE, round=1, eval_loss=2.0),
        ev.make(ev.NOTICE, message="between rounds"),
    ]
    for event in [*one_round, ev.make(ev.ROUND_STARTED, round=2, clients=1)]:
        record.write(event)

    written = [event["type"] for event in ev.read_events(path)]
    assert on_disk_at_each_sync == [written[:1], written[:5], written]


def test_a_new_record_is_synced_into_its_folder(tmp_path, monkeypatch):
    """Else a power cut could leave the folder without the file, however often it was synced."""
    synced_folders = []
    monkeypatch.setattr(
        recorder.os,
        "fsync",
        lambda descriptor: synced_folders.append(stat.S_ISDIR(os.fstat(descriptor).st_mode)),
    )
    EventRecorder(tmp_path / "events.jsonl").open()
    assert synced_folders == [True]


def test_reopening_a_record_drops_a_torn_last_line_and_appends_after_the_last_event(tmp_path):
    path = tmp_path / "events.jsonl"
    whole = ev.encode(ev.stamp(ev.make(ev.NOTICE, message="whole")))
    path.write_text(whole + '{"v":1,"t":5,"type":"rou')
    record = EventRecorder(path)

    record.open()
    record.write(ev.make(ev.NOTICE, message="after the crash"))
    record.close()

    assert [event["message"] for event in ev.read_events(path)] == ["whole", "after the crash"]


def test_reopening_after_a_power_cut_cuts_the_zeroed_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    whole = ev.encode(ev.stamp(ev.make(ev.NOTICE, message="whole"))).encode()
    path.write_bytes(whole + b"\0" * 300)  # the file grew; its last blocks never reached the disk
    record = EventRecorder(path)

    record.open()
    record.write(ev.make(ev.NOTICE, message="after the power cut"))
    record.close()

    assert [event["message"] for event in ev.read_events(path)] == ["whole", "after the power cut"]


SAMPLE_RUN = sample_runs_folder() / "fedavg" / "events.jsonl"


def unstamped(event):
    return {key: value for key, value in event.items() if key not in ("v", "t")}


def write_forever(stream, record, acks):
    """A run's events written through the recorder over and over, each write acknowledged in
    `acks` once `write` has returned."""
    recorder = EventRecorder(record)
    recorder.open()
    acknowledgements = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    while True:
        for event in stream:
            recorder.write(event)
            os.write(acknowledgements, b"+\n")


def kill_the_writer_once_it_has_written(size, stream, record, acks):
    # forked, not a fresh interpreter: 20 of those would start slower than they write
    writer = multiprocessing.get_context("fork").Process(
        target=write_forever, args=(stream, record, acks), daemon=True
    )
    writer.start()
    try:
        wait_for(
            lambda: not writer.is_alive() or (record.exists() and record.stat().st_size >= size),
            interval=0.0005,
        )
    finally:
        writer.kill()  # SIGKILL
        writer.join()
    assert writer.exitcode == -signal.SIGKILL, "the writer died before it was killed"


def test_a_writer_killed_at_any_instant_leaves_every_written_line_readable(tmp_path):
    stream = [unstamped(event) for event in ev.read_events(SAMPLE_RUN)]
    sizes = random.Random(20).sample(range(1, 2 * SAMPLE_RUN.stat().st_size), 20)
    for kill, size in enumerate(sizes):
        run = tmp_path / f"run-{kill}"
        run.mkdir()
        record, acks = run / "events.jsonl", tmp_path / f"acks-{kill}"
        kill_the_writer_once_it_has_written(size, stream, record, acks)

        acknowledged = acks.read_bytes().count(b"\n")
        complete_lines = record.read_bytes().count(b"\n")
        events = read_run_events(run)
        assert len(events) == complete_lines >= acknowledged
        assert [unstamped(event) for event in events] == [
            stream[index % len(stream)] for index in range(len(events))
        ]
        assert open_run(run).run_id == RunState.from_events(events).run_id == "fedavg"

        resumed = EventRecorder(record)  # and the record goes on, as a resumed run's does
        resumed.open()
        resumed.write(ev.make(ev.NOTICE, message="resumed"))
        resumed.close()
        assert read_run_events(run)[:-1] == events
        assert read_run_events(run)[-1]["message"] == "resumed"
