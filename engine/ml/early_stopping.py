"""Early stopping on central eval loss, decided by the ServerApp after each round's evaluation.

Two things are tracked whether or not early stopping is on, so that turning it on mid-run (or
resuming a run) decides from the whole history: the best round (any decrease of eval loss: what
`checkpoints/best` holds) and the rounds since eval loss last fell by more than `min_delta`
(what patience counts).
"""

from __future__ import annotations

import dataclasses
import math

from engine.core.config import EarlyStopping as Policy


class EarlyStoppingTracker:
    def __init__(
        self,
        policy: Policy,
        last_round: int,
        *,
        best_round: int | None = None,
        best_eval_loss: float | None = None,
        rounds_without_improvement: int = 0,
    ) -> None:
        """`policy` is the run's config; the keyword arguments restore where a resumed run
        stood (as its last `round_done` recorded it)."""
        self.policy = policy
        self.last_round = last_round
        self.best_round = best_round
        self.best_eval_loss = math.inf if best_eval_loss is None else best_eval_loss
        self.rounds_without_improvement = rounds_without_improvement

    def record(self, server_round: int, eval_loss: float) -> bool:
        """Take a round's central eval loss; True when it is the best so far. A NaN loss (a
        diverged model) is never an improvement."""
        if eval_loss < self.best_eval_loss - self.policy.min_delta:
            self.rounds_without_improvement = 0
        else:
            self.rounds_without_improvement += 1
        if eval_loss < self.best_eval_loss:
            self.best_round, self.best_eval_loss = server_round, eval_loss
            return True
        return False

    def change(self, *, enabled: bool | None = None, patience: int | None = None) -> None:
        """A live change from the user; None keeps the current value."""
        if enabled is not None:
            self.policy = dataclasses.replace(self.policy, enabled=enabled)
        if patience is not None:
            self.policy = dataclasses.replace(self.policy, patience=patience)

    def should_stop(self, server_round: int) -> bool:
        """True when the run should end after `server_round`. Never after the last round: the
        run is complete then, not stopped early."""
        return (
            self.policy.enabled
            and server_round < self.last_round
            and self.rounds_without_improvement >= self.policy.patience
        )

    def reason(self) -> str:
        return (
            f"central eval loss has not improved by more than {self.policy.min_delta:g} for "
            f"{self.rounds_without_improvement} round(s) (patience {self.policy.patience})"
        )
