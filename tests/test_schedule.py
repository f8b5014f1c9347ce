"""The clients' learning rate across rounds: constant, or FlowerTune's cosine annealing."""

import math

import pytest

from engine.ml.schedule import round_learning_rate


def cosine(server_round, rounds, learning_rate=1e-3, min_learning_rate=1e-5):
    return round_learning_rate(learning_rate, min_learning_rate, "cosine", server_round, rounds)


def test_constant_is_the_learning_rate_every_round():
    assert {round_learning_rate(3e-4, 1e-6, "constant", k, 5) for k in range(1, 6)} == {3e-4}


@pytest.mark.parametrize("rounds", [2, 3, 5, 20])
def test_cosine_starts_at_the_learning_rate_ends_at_the_minimum_and_only_falls(rounds):
    rates = [cosine(k, rounds) for k in range(1, rounds + 1)]
    assert rates[0] == 1e-3
    assert rates[-1] == 1e-5
    assert all(earlier > later for earlier, later in zip(rates, rates[1:]))


def test_cosine_is_flowertunes_cosine_annealing_one_round_earlier():
    def flowertune(current_round, total_round, lrate_max, lrate_min):
        cos_inner = math.pi * current_round / total_round
        return lrate_min + 0.5 * (lrate_max - lrate_min) * (1 + math.cos(cos_inner))

    for server_round in range(1, 11):
        assert cosine(server_round, 10) == pytest.approx(
            flowertune(server_round - 1, 9, 1e-3, 1e-5)
        )
    assert cosine(3, 5) == pytest.approx((1e-3 + 1e-5) / 2)  # halfway at the middle round


def test_a_single_round_trains_at_the_learning_rate():
    assert cosine(1, 1) == 1e-3


def test_a_round_past_the_last_stays_at_the_minimum():
    assert cosine(7, 5) == 1e-5
