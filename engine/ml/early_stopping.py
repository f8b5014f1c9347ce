"""Early stopping, decided by the ServerApp after each round's evaluation, on central eval loss
(lower is better) or on code_eval's pass@1 (higher is better; only rounds that measured it count).

Two things are tracked whether or not early stopping is on, so that turning it on mid-run (or
resuming a run) decides from the whole history: the best round by eval loss (any decrease: what
`checkpoints/best` holds) and the rounds since the metric last improved by more than `min_delta`
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
        best_pass_at_1: float | None = None,
    ) -> None:
        """`policy` is the run's config; the keyword arguments restore where a resumed run
        stood (as its last `round_done` recorded it)."""
        self.policy = policy
        self.last_round = last_round
        self.best_round = best_round
        self.best_eval_loss = math.inf if best_eval_loss is None else best_eval_loss
        self.rounds_without_improvement = rounds_without_improvement
        self.best_pass_at_1 = -math.inf if best_pass_at_1 is None else best_pass_at_1

    def record(self, server_round: int, eval_loss: float, pass_at_1: float | None = None) -> bool:
        """Take a round's central eval loss (and pass@1, when code_eval measured it); True when
        the eval loss is the best so far. A NaN (a diverged model) is never an improvement."""
        if self.policy.metric == "pass@1":
            if pass_at_1 is not None:
                self._count(pass_at_1 > self.best_pass_at_1 + self.policy.min_delta)
        else:
            self._count(eval_loss < self.best_eval_loss - self.policy.min_delta)
        if pass_at_1 is not None and pass_at_1 > self.best_pass_at_1:
            self.best_pass_at_1 = pass_at_1
        if eval_loss < self.best_eval_loss:
            self.best_round, self.best_eval_loss = server_round, eval_loss
            return True
        return False

    def _count(self, improved: bool) -> None:
        self.rounds_without_improvement = 0 if improved else self.rounds_without_improvement + 1

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
        metric = "pass@1" if self.policy.metric == "pass@1" else "central eval loss"
        return (
            f"{metric} has not improved by more than {self.policy.min_delta:g} for "
            f"{self.rounds_without_improvement} round(s) (patience {self.policy.patience})"
        )
