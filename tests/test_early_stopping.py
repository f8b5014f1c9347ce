import math

from engine.core.config import EarlyStopping as Policy
from engine.ml.early_stopping import EarlyStoppingTracker


def tracker(enabled=True, patience=2, min_delta=0.0, last_round=10, **resumed):
    return EarlyStoppingTracker(
        Policy(enabled=enabled, patience=patience, min_delta=min_delta), last_round, **resumed
    )


def record_all(early_stopping, losses, first_round=0):
    """Record one loss per round; the rounds after which early stopping would end the run."""
    stops = []
    for server_round, loss in enumerate(losses, start=first_round):
        early_stopping.record(server_round, loss)
        if early_stopping.should_stop(server_round):
            stops.append(server_round)
    return stops


def test_each_lower_eval_loss_is_the_new_best_round():
    early_stopping = tracker()

    assert [early_stopping.record(n, loss) for n, loss in enumerate([3.0, 2.5, 2.7, 2.4])] == [
        True,
        True,
        False,
        True,
    ]
    assert (early_stopping.best_round, early_stopping.best_eval_loss) == (3, 2.4)


def test_the_run_stops_after_patience_rounds_without_improvement():
    early_stopping = tracker(patience=2)

    assert record_all(early_stopping, [3.0, 2.0, 2.1, 2.2]) == [3]
    assert early_stopping.rounds_without_improvement == 2
    assert early_stopping.best_round == 1


def test_an_improvement_resets_the_count():
    early_stopping = tracker(patience=2)

    assert record_all(early_stopping, [3.0, 3.1, 2.0, 2.1]) == []
    assert early_stopping.rounds_without_improvement == 1


def test_a_decrease_of_at_most_min_delta_is_a_new_best_but_not_an_improvement():
    early_stopping = tracker(patience=2, min_delta=0.1)

    stops = record_all(early_stopping, [3.0, 2.95, 2.9])

    assert stops == [2]
    assert early_stopping.best_round == 2  # checkpoints/best still follows the lowest loss


def test_a_diverged_round_counts_as_no_improvement():
    early_stopping = tracker(patience=1)

    early_stopping.record(0, 3.0)
    assert early_stopping.record(1, math.nan) is False
    assert early_stopping.should_stop(1)
    assert early_stopping.best_eval_loss == 3.0


def test_disabled_early_stopping_never_stops_but_keeps_counting():
    early_stopping = tracker(enabled=False, patience=1)

    assert record_all(early_stopping, [3.0, 3.1, 3.2]) == []
    assert early_stopping.rounds_without_improvement == 2


def test_enabling_it_live_decides_from_the_rounds_already_counted():
    early_stopping = tracker(enabled=False, patience=2)
    record_all(early_stopping, [3.0, 3.1, 3.2])

    early_stopping.change(enabled=True)

    assert early_stopping.should_stop(2)


def test_disabling_it_live_lets_the_run_go_on():
    early_stopping = tracker(patience=1)
    record_all(early_stopping, [3.0, 3.1])

    early_stopping.change(enabled=False)

    assert not early_stopping.should_stop(1)


def test_raising_patience_live_waits_longer():
    early_stopping = tracker(patience=1)
    record_all(early_stopping, [3.0, 3.1])

    early_stopping.change(patience=3)

    assert not early_stopping.should_stop(1)
    assert record_all(early_stopping, [3.2, 3.3], first_round=2) == [3]


def test_lowering_patience_live_below_the_count_stops_at_the_next_decision():
    early_stopping = tracker(patience=5)
    record_all(early_stopping, [3.0, 3.1, 3.2, 3.3])

    early_stopping.change(patience=2)

    assert early_stopping.should_stop(3)


def test_a_live_change_keeps_what_it_does_not_name():
    early_stopping = tracker(enabled=True, patience=4, min_delta=0.01)

    early_stopping.change(patience=2)
    early_stopping.change(enabled=False)

    assert early_stopping.policy == Policy(enabled=False, patience=2, min_delta=0.01)


def test_it_never_stops_after_the_last_round():
    early_stopping = tracker(patience=1, last_round=3)

    assert record_all(early_stopping, [3.0, 2.0, 2.1, 2.2]) == [2]
    assert not early_stopping.should_stop(3)


def test_a_resumed_run_goes_on_from_its_recorded_state():
    early_stopping = tracker(
        patience=2, best_round=4, best_eval_loss=2.0, rounds_without_improvement=1
    )

    assert early_stopping.record(6, 2.5) is False
    assert early_stopping.should_stop(6)
    assert (early_stopping.best_round, early_stopping.best_eval_loss) == (4, 2.0)


def test_a_resumed_run_with_no_best_yet_takes_its_next_round_as_best():
    early_stopping = tracker(best_round=None, best_eval_loss=None)

    assert early_stopping.record(3, 9.0) is True
    assert early_stopping.best_round == 3


def test_the_reason_names_min_delta_the_count_and_patience():
    early_stopping = tracker(patience=2, min_delta=0.05)
    record_all(early_stopping, [3.0, 3.0, 3.0])

    assert early_stopping.reason() == (
        "central eval loss has not improved by more than 0.05 for 2 round(s) (patience 2)"
    )


def test_on_pass_at_1_a_higher_score_is_the_improvement_and_loss_alone_does_not_count():
    early_stopping = EarlyStoppingTracker(Policy(enabled=True, patience=2, metric="pass@1"), 10)
    scored = [(3.0, 0.0), (2.5, 0.125), (2.0, 0.125), (1.5, 0.0)]  # loss falls, pass@1 stalls

    stops = []
    for server_round, (eval_loss, pass_at_1) in enumerate(scored):
        early_stopping.record(server_round, eval_loss, pass_at_1)
        if early_stopping.should_stop(server_round):
            stops.append(server_round)

    assert stops == [3]
    assert early_stopping.best_pass_at_1 == 0.125
    assert early_stopping.best_round == 3  # checkpoints/best still follows the eval loss
    assert early_stopping.reason().startswith("pass@1 has not improved")


def test_on_pass_at_1_rounds_that_did_not_measure_it_are_not_counted():
    early_stopping = EarlyStoppingTracker(Policy(enabled=True, patience=1, metric="pass@1"), 10)
    early_stopping.record(0, 3.0, 0.25)
    for server_round in (1, 2, 3):  # code_eval.every = 4
        early_stopping.record(server_round, 3.0 + server_round, None)

    assert early_stopping.rounds_without_improvement == 0
    early_stopping.record(4, 2.0, 0.25)
    assert early_stopping.should_stop(4)
