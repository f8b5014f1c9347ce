"""The headless printer and the TUI's event log tell events in `engine.core.describe`'s words."""

import io
import json
import re

from engine.core import events as ev
from engine.core.describe import describe
from engine.record.run_folders import read_run_events
from tests.factories import simple_run_events
from tests.waiting import until
from tui.app import replay_app
from tui.headless import HeadlessPrinter
from tui.widgets.event_log import EventLog, log_line

CHECKPOINT = dict(
    type_=ev.CHECKPOINT_SAVED, round=1, kind="best", eval_loss=7.0, path="checkpoints/best"
)


def stamped(events):
    return [ev.stamp(ev.make(**e), now=1000.0 + i) for i, e in enumerate(events)]


def test_the_event_log_tells_a_saved_checkpoint_in_words():
    (event,) = stamped([CHECKPOINT])
    assert log_line(event).plain == f"00:16:40 {describe(event)}"
    assert "saved the best global model (round 1" in log_line(event).plain


def test_the_event_log_leaves_out_step_progress_and_per_round_processes():
    progress, clientapp, superlink = stamped(
        [
            dict(type_=ev.CLIENT_PROGRESS, round=1, client=0, step=3, steps_total=32, loss=6.0),
            dict(type_=ev.PROCESS_STARTED, role="clientapp", pid=11, client=0),
            dict(type_=ev.PROCESS_STARTED, role="superlink", pid=10),
        ]
    )
    assert log_line(progress) is None and log_line(clientapp) is None
    assert log_line(superlink).plain.endswith("superlink started (pid 10)")


def test_the_headless_printer_prints_milestones_and_indents_what_happens_within():
    events = simple_run_events(rounds=((8.0, None), (7.0, 7.5)))
    events.insert(-1, CHECKPOINT)
    events.insert(
        3, dict(type_=ev.CLIENT_PROGRESS, round=1, client=0, step=16, steps_total=32, loss=6.5)
    )
    events = stamped(events)
    out = io.StringIO()
    printer = HeadlessPrinter(out, live_line=False)
    for event in events:
        printer.show(event)
    by_type = {event["type"]: describe(event) for event in events}
    assert out.getvalue().splitlines() == [
        by_type[ev.RUN_STARTED],
        describe(events[1]),  # round 0's evaluation
        f"  {by_type[ev.CLIENT_PROGRESS]}",  # half the local steps: a log file hears of it
        by_type[ev.ROUND_DONE],
        f"  {by_type[ev.CHECKPOINT_SAVED]}",
        by_type[ev.RUN_FINISHED],
    ]


def test_the_event_log_tells_every_client_crash_whatever_process_died():
    crash, restart = stamped(
        [
            dict(
                type_=ev.CLIENT_CRASHED,
                client=1,
                role="worker",
                pid=12,
                returncode=-9,
                round=2,
                restarting=True,
            ),
            dict(type_=ev.CLIENT_RESTARTED, client=1, role="worker", pid=13, attempt=1),
        ]
    )
    assert log_line(crash).plain.endswith(describe(crash))
    assert log_line(restart).plain.endswith(describe(restart))


# An OSC 52 clipboard write, a screen clear (CSI 2J) and the same clear as a C1 CSI (0x9b).
HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x9b2J"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def hostile_run(folder):
    """A run folder someone sent: its record names a host, a notice and a client's error, each
    with terminal control sequences in it (written as is, not through fedtui's writer)."""
    events = simple_run_events(run_id="r1")
    events[1:1] = [
        dict(
            type_=ev.CLIENT_JOINED,
            client=0,
            node_id=7,
            address=f"10.0.0.9{HOSTILE}",
            host=f"gpu{HOSTILE}box",
        ),
        dict(type_=ev.NOTICE, message=f"a notice{HOSTILE}\non two lines"),
        dict(type_=ev.ERROR, source="client", client=1, message=f"client 1 failed{HOSTILE}"),
    ]
    folder.mkdir()
    lines = [
        json.dumps({"v": ev.SCHEMA_VERSION, "t": 1000.0 + i, **ev.make(**e)}, ensure_ascii=False)
        for i, e in enumerate(events)
    ]
    (folder / "events.jsonl").write_text("".join(line + "\n" for line in lines))
    assert "\x9b" in (folder / "events.jsonl").read_text()
    return folder


def test_a_replayed_record_prints_no_terminal_control_sequences(tmp_path):
    out = io.StringIO()
    printer = HeadlessPrinter(out, live_line=False)
    for event in read_run_events(hostile_run(tmp_path / "r1")):
        printer.show(event)

    printed = out.getvalue()
    assert not CONTROL.search(printed.replace("\n", "")), repr(printed)
    assert "52;c;" not in printed and "2J" not in printed
    assert "gpubox" in printed and "a notice on two lines" in printed
    assert "client 1 failed" in printed


async def test_a_replayed_record_shows_no_terminal_control_sequences_in_the_tui(tmp_path):
    events = read_run_events(hostile_run(tmp_path / "r1"))
    app = replay_app([("r1", events)])
    async with app.run_test(size=(120, 40)):
        log = await until(lambda: app.screen.query(EventLog).first(None))
        await until(lambda: any("client 1 failed" in line.text for line in log.lines))
        shown = "\n".join(line.text for line in log.lines) + app.export_screenshot()

    assert not CONTROL.search(shown.replace("\n", "")), repr(shown)
    assert "52;c;" not in shown and "2J" not in shown
    assert "gpubox" in shown and "a notice on two lines" in shown
