"""The clients' learning rate, round by round (lr_schedule)."""

from __future__ import annotations

import math


def round_learning_rate(
    learning_rate: float,
    min_learning_rate: float,
    schedule: str,
    server_round: int,
    rounds: int,
) -> float:
    """The learning rate clients train with in `server_round` (1-based) of `rounds`.

    constant: `learning_rate` every round. cosine: cosine annealing across the rounds, from
    `learning_rate` at round 1 to `min_learning_rate` at round `rounds`, the curve of
    FlowerTune's `cosine_annealing(current_round, total_round, lrate_max, lrate_min)`
    (flower's examples/flowertune-llm), lrate_min + (lrate_max - lrate_min) / 2 *
    (1 + cos(pi * current_round / total_round)). FlowerTune calls it with the server round and
    the number of rounds, so its rounds 1..N run from just below lrate_max down to lrate_min;
    this one is that function at (server_round - 1, rounds - 1): round 1 trains at exactly
    `learning_rate`, the last at exactly `min_learning_rate`. A single round trains at
    `learning_rate`; a round past the last (rounds lowered in a live run) at
    `min_learning_rate`.
    """
    if schedule == "constant" or rounds <= 1:
        return learning_rate
    if schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {schedule!r}")
    progress = min(max(server_round - 1, 0) / (rounds - 1), 1.0)
    weight = 0.5 * (1 + math.cos(math.pi * progress))  # 1 at the first round, 0 at the last
    # the same curve, written so that both ends are exact in floating point
    return learning_rate * weight + min_learning_rate * (1 - weight)
