"""The headless printer and the TUI's event log tell events in `engine.core.describe`'s words."""

import io

from engine.core import events as ev
from engine.core.describe import describe
from tests.factories import simple_run_events
from tui.headless import HeadlessPrinter
from tui.widgets.event_log import log_line

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
