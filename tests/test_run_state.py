"""RunState: what views show after a sequence of events, for live runs and replays alike."""

import dataclasses

import pytest

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.describe import describe
from engine.record.run_state import RunState
from tests.factories import simple_run_events


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


# -- clients whose processes die ------------------------------------------------------------


def crashed_worker_run(restarting=True):
    """A 2-client, 3-round run in which client 1's warm worker is killed (SIGKILL) in round 2,
    as the controller and the ServerApp record it: the crash, the ServerApp's error for the
    relay's failed reply, the round aggregated from client 0 alone, then (when restarting) the
    worker started again and client 1 back in round 3."""
    config = dataclasses.replace(RunConfig(), rounds=3, num_clients=2, min_clients=1)
    events = [
        ev.make(ev.RUN_STARTED, run_id="crash", config=config.to_dict()),
        ev.make(ev.ROUND_DONE, round=0, eval_loss=8.3, best_round=0),
    ]

    def progress(number, client, step):
        return ev.make(
            ev.CLIENT_PROGRESS, round=number, client=client, step=step, steps_total=16, loss=7.0
        )

    def reply(number, client):
        return ev.make(
            ev.CLIENT_ROUND_DONE, round=number, client=client, train_loss=7.0, examples=256
        )

    def train(number, clients):
        events.append(ev.make(ev.ROUND_STARTED, round=number, clients=2))
        for client in clients:
            events.extend([progress(number, client, 16), reply(number, client)])

    train(1, clients=(0, 1))
    events.append(ev.make(ev.ROUND_DONE, round=1, eval_loss=7.6, train_loss=7.0, best_round=1))
    events += [
        ev.make(ev.ROUND_STARTED, round=2, clients=2),
        progress(2, client=0, step=4),
        progress(2, client=1, step=4),
        ev.make(
            ev.CLIENT_CRASHED,
            client=1,
            role="worker",
            pid=4201,
            returncode=-9,
            round=2,
            restarting=restarting,
        ),
        progress(2, client=1, step=5),  # sent just before it died, folded after the crash
        ev.make(
            ev.ERROR,
            source="clientapp",
            client=1,
            round=2,
            message="client 1 failed in round 2: worker 1 died",
        ),
        progress(2, client=0, step=16),
        reply(2, client=0),
        ev.make(ev.ROUND_DONE, round=2, eval_loss=7.3, train_loss=7.0, best_round=2),
    ]
    if restarting:
        events.append(ev.make(ev.CLIENT_RESTARTED, client=1, role="worker", pid=4301, attempt=1))
    train(3, clients=(0, 1) if restarting else (0,))
    events.append(ev.make(ev.ROUND_DONE, round=3, eval_loss=7.1, train_loss=7.0, best_round=3))
    events.append(ev.make(ev.RUN_FINISHED, status="completed", rounds_completed=3))
    return [ev.stamp(event, now=1000.0 + i) for i, event in enumerate(events)]


def fold_until(events, predicate):
    """The state right after the first event `predicate` accepts."""
    index = next(i for i, event in enumerate(events) if predicate(event))
    return RunState.from_events(events[: index + 1])


def client_states(state):
    return {number: client.state for number, client in state.clients.items()}


def test_a_crashed_worker_shows_restarting_then_waiting_then_training():
    events = crashed_worker_run(restarting=True)

    crashed = fold_until(events, lambda e: e["type"] == ev.CLIENT_CRASHED)
    assert client_states(crashed) == {0: "training", 1: "restarting"}
    assert crashed.clients[1].crashes == 1
    assert crashed.clients[1].last_crash == "worker exited with code -9 in round 2"
    assert crashed.clients[1].step == 0  # the dead process's progress is gone with it

    server_gave_up = fold_until(events, lambda e: e["type"] == ev.ERROR)
    assert server_gave_up.clients[1].state == "restarting"  # not undone by its last progress
    assert server_gave_up.errors == ["client 1 failed in round 2: worker 1 died"]

    restarted = fold_until(events, lambda e: e["type"] == ev.CLIENT_RESTARTED)
    assert client_states(restarted) == {0: "waiting", 1: "waiting"}

    training_again = fold_until(
        events, lambda e: e["type"] == ev.CLIENT_PROGRESS and e["round"] == 3 and e["client"] == 1
    )
    assert training_again.clients[1].state == "training"
    assert training_again.clients[1].crashes == 1  # the count stays for the run


def test_a_client_restarted_at_once_shows_failed_for_the_round_it_lost():
    """The controller starts a dead worker again in the same tick; the ServerApp's error for
    the lost reply comes after."""
    events = crashed_worker_run(restarting=True)
    crash = next(i for i, e in enumerate(events) if e["type"] == ev.CLIENT_CRASHED)
    restart = next(e for e in events if e["type"] == ev.CLIENT_RESTARTED)
    reordered = [e for e in events if e is not restart]
    reordered.insert(crash + 1, restart)

    lost_round = fold_until(reordered, lambda e: e["type"] == ev.ERROR)
    assert lost_round.clients[1].state == "failed"
    next_round = fold_until(
        reordered,
        lambda e: e["type"] == ev.CLIENT_PROGRESS and e["round"] == 3 and e["client"] == 1,
    )
    assert next_round.clients[1].state == "training"


def test_a_client_that_is_not_restarted_stays_crashed_for_the_rest_of_the_run():
    events = crashed_worker_run(restarting=False)

    next_round = fold_until(events, lambda e: e["type"] == ev.ROUND_STARTED and e["round"] == 3)
    assert client_states(next_round) == {0: "waiting", 1: "crashed"}

    finished = RunState.from_events(events)
    assert client_states(finished) == {0: "done", 1: "crashed"}
    assert finished.clients[1].last_crash == "worker exited with code -9 in round 2"


def test_a_client_that_goes_on_without_its_worker_trains_again_in_a_later_round():
    """Past its restarts a client runs Flower's own ClientApp: its progress shows it is back."""
    state = RunState.from_events(crashed_worker_run(restarting=False)[:-2])
    state.apply(ev.make(ev.CLIENT_PROGRESS, round=4, client=1, step=1, steps_total=16, loss=7.0))
    assert state.clients[1].state == "training"


def test_a_client_still_restarting_when_the_run_ends_is_left_crashed():
    state = fold_until(crashed_worker_run(restarting=True), lambda e: e["type"] == ev.ERROR)
    assert state.clients[1].state == "restarting"
    state.apply(ev.make(ev.RUN_FINISHED, status="failed"))
    assert client_states(state) == {0: "ended", 1: "crashed"}


def test_a_crashed_clients_gpu_memory_goes_with_its_process():
    state = RunState()
    state.apply(
        ev.make(ev.CLIENT_PROGRESS, round=1, client=0, step=1, steps_total=8, vram_bytes=11 << 30)
    )
    state.apply(
        ev.make(
            ev.CLIENT_CRASHED,
            client=0,
            role="worker",
            pid=7,
            returncode=-9,
            round=1,
            restarting=True,
        )
    )
    assert (state.clients[0].vram_bytes, state.clients[0].vram_peak) == (0, 11 << 30)


def test_a_crash_between_rounds_names_no_round():
    state = RunState()
    state.apply(
        ev.make(
            ev.CLIENT_CRASHED, client=0, role="supernode", pid=77, returncode=None, restarting=True
        )
    )
    assert (state.clients[0].state, state.clients[0].last_crash) == ("restarting", "supernode died")


def test_a_replayed_crash_reads_back_as_it_was_seen_live(tmp_path):
    events = crashed_worker_run(restarting=True)
    live = RunState()
    for event in events:
        live.apply(event)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(ev.encode(event) for event in events))
    replayed = RunState.from_events(ev.read_events(path))
    assert replayed.clients == live.clients
    assert client_states(replayed) == {0: "done", 1: "done"}
    assert [describe(e) for e in events if e["type"] == ev.CLIENT_CRASHED] == [
        "client 1 crashed: worker (pid 4201) exited with code -9 in round 2; restarting it"
    ]


# -- how a finished run leaves its clients ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "shown"),
    [("completed", "done"), ("stopped", "done"), ("aborted", "ended"), ("failed", "ended")],
)
def test_a_finished_run_shows_no_client_still_waiting(status, shown):
    events = [
        ev.stamp(ev.make(**e), now=100.0 + i)
        for i, e in enumerate(simple_run_events(status=status))
    ]
    assert client_states(RunState.from_events(events)) == {0: shown, 1: shown}


def test_a_resumed_run_brings_every_client_back_to_waiting():
    events = crashed_worker_run(restarting=False)
    state = RunState.from_events(events)
    state.apply(ev.make(ev.RUN_RESUMED, from_round=3, config=state.config))
    assert client_states(state) == {0: "waiting", 1: "waiting"}
    assert state.clients[1].crashes == 1
