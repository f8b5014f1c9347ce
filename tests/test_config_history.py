"""A run's live changes, holds and fork as its record tells them: what each round ran with,
what the views show, and what `fedtui export` gives each round."""

import csv
import dataclasses
import io

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.status import Status
from engine.record.run_folders import export
from engine.record.run_state import RunState

CONFIG = dataclasses.replace(RunConfig(), rounds=4).to_dict()


def stamped(*events):
    return [ev.stamp(ev.make(**event), now=1000.0 + i) for i, event in enumerate(events)]


def played(*events) -> RunState:
    return RunState.from_events(stamped(*events))


def round_done(number, **fields):
    return dict(type_=ev.ROUND_DONE, round=number, eval_loss=5.0 - number, **fields)


def changed(number, key, old, new):
    return dict(type_=ev.CONFIG_CHANGED, round=number, key=key, old=old, new=new, source="cli")


def a_steered_run():
    return played(
        dict(type_=ev.RUN_STARTED, run_id="r", config=CONFIG),
        round_done(0),
        round_done(1),
        round_done(2),
        changed(3, "local_epochs", 1, 2),
        changed(3, "learning_rate", 0.001, 0.0005),
        round_done(3),
        changed(4, "early_stopping.patience", 2, 5),
        round_done(4),
    )


def test_each_round_ran_with_the_values_of_the_changes_before_it():
    history = a_steered_run().config_history

    assert [history.for_round(r)["local_epochs"] for r in range(5)] == [1, 1, 1, 2, 2]
    assert history.for_round(2)["learning_rate"] == 0.001
    assert history.for_round(4)["early_stopping"]["patience"] == 5
    assert history.changed_keys() == ["local_epochs", "learning_rate", "early_stopping.patience"]


def test_the_views_see_the_config_the_run_goes_on_with_and_the_latest_change():
    state = a_steered_run()

    assert state.config["local_epochs"] == 2 and state.early_stopping["patience"] == 5
    assert state.latest_change.key == "early_stopping.patience"
    assert CONFIG["local_epochs"] == 1  # the recorded start is left as it was


def test_export_gives_each_round_the_values_it_ran_with():
    rows = list(csv.DictReader(io.StringIO(export(a_steered_run(), "csv"))))

    assert [row["local_epochs"] for row in rows] == ["1", "1", "1", "2", "2"]
    assert [row["learning_rate"] for row in rows] == ["0.001"] * 3 + ["0.0005"] * 2
    assert rows[4]["early_stopping.patience"] == "5"


def test_a_resumed_run_goes_on_with_the_config_it_resumed_with():
    resumed = dict(CONFIG, rounds=6, local_epochs=3)
    state = played(
        dict(type_=ev.RUN_STARTED, run_id="r", config=CONFIG),
        round_done(0),
        round_done(1),
        dict(type_=ev.RUN_FINISHED, status=Status.STOPPED),
        dict(type_=ev.RUN_RESUMED, from_round=1, config=resumed),
        round_done(2),
    )

    assert [state.config_history.for_round(r)["local_epochs"] for r in (1, 2)] == [1, 3]


def test_a_held_run_says_after_which_round_until_it_continues():
    start = [dict(type_=ev.RUN_STARTED, run_id="r", config=CONFIG), round_done(0), round_done(1)]
    held = played(*start, dict(type_=ev.HELD, round=1))
    going_on = played(*start, dict(type_=ev.HELD, round=1), dict(type_=ev.CONTINUED, round=1))
    stopped = played(
        *start,
        dict(type_=ev.HELD, round=1),
        dict(type_=ev.STOP_REQUESTED),
        dict(type_=ev.RUN_FINISHED, status=Status.STOPPED),
    )

    assert (held.status, held.held_after) == (Status.HELD, 1)
    assert (going_on.status, going_on.held_after) == (Status.RUNNING, None)
    assert (stopped.status, stopped.held_after) == (Status.STOPPED, None)


def test_a_fork_names_its_parent():
    parent = {"run": "p", "path": "/runs/p", "round": 2}
    state = played(dict(type_=ev.RUN_STARTED, run_id="f", config=CONFIG, forked_from=parent))
    assert state.forked_from == parent
