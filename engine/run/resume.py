"""Resume rules: which runs may go on, what may change when they do, and where they go on from."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.core.errors import ConfigError, FedtuiError
from engine.core.status import RESUMABLE
from engine.record import checkpoints, run_lock
from engine.record.run_folders import open_run

# What may change when a run resumes; everything else would make it a different run.
RESUME_OVERRIDABLE = ("rounds", "round_timeout", "device", "threads_per_client", "early_stopping")


class ResumeState(TypedDict):
    """Where the ServerApp goes on from: the round of the last saved global model and where
    early stopping stood (as the run's last `round_done` recorded it)."""

    round: int
    best_round: int | None
    best_eval_loss: float | None
    rounds_without_improvement: int
    best_pass_at_1: float | None


def resume_point(
    run_dir: Path, overrides: list[str] | tuple[str, ...] = (), served: bool = False
) -> tuple[RunConfig, ResumeState]:
    """The config a resumed run goes on with and its state; raises FedtuiError (ConfigError for
    an override) saying why the run cannot be resumed. `served`: it goes on with its clients on
    other hosts (`fedtui serve --resume`), as it must have begun."""
    state = open_run(run_dir)
    if state.served != served:
        began, goes_on = (
            ("served to clients on other hosts", "fedtui serve --resume")
            if state.served
            else ("trained by clients on this machine", "fedtui run --resume")
        )
        raise FedtuiError(f"run {run_dir.name} was {began}: go on with {goes_on} {run_dir}")
    controller = run_lock.live_controller(run_dir)
    if controller is not None:
        raise run_lock.RunHeld(f"run {run_dir.name} is running (controller pid {controller})")
    status = run_lock.status(run_dir, state.status)
    # A completed run goes on only with a higher `rounds` (checked below, once overrides are
    # read); an interrupted one (its controller was killed) goes on like an aborted one.
    if status not in RESUMABLE:
        raise FedtuiError(
            f"run {run_dir.name} is {status}: only a stopped, aborted, failed, completed "
            f"or interrupted run can be resumed"
        )
    last = checkpoints.read_info(run_dir / "checkpoints" / "last")
    if last is None:
        raise FedtuiError(f"run {run_dir.name} has no saved global model to resume from")
    for item in overrides:
        if item.partition("=")[0].split(".")[0].strip() not in RESUME_OVERRIDABLE:
            raise ConfigError(
                f"--set {item}: a resumed run can only change {', '.join(RESUME_OVERRIDABLE)}"
            )
    config = load_config(run_dir / "config.toml", overrides)
    if last["round"] >= config.rounds:
        raise FedtuiError(
            f"run {run_dir.name} already has {last['round']} of "
            f"{config.rounds} rounds; --set rounds=N to go further"
        )
    return config, ResumeState(
        round=last["round"],
        best_round=state.best_round,
        best_eval_loss=state.best_eval_loss,
        rounds_without_improvement=state.rounds_without_improvement,
        best_pass_at_1=max(
            (result.pass_at[1] for result in state.rounds.values() if 1 in result.pass_at),
            default=None,
        ),
    )
