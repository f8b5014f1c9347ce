"""Forks: a new run whose round 0 is another run's global model after one of its rounds.

    config, origin = fork_point("runs/<id>@2", None, ["proximal_mu=1.0"])

A fork goes on from where its parent stood after that round: the same weights and the same
strategy state (engine.app.server.model_store), with the config that round ran with, changed by
a config file's keys and `--set`s (anything but what shaped the weights: engine.core.live_config).
Its rounds are its own, counted from 0; unless set, as many as its parent had left. Its record
names its parent and round, so views draw the parent's rounds before it as its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.config import RunConfig
from engine.core.config_checks import config_from_dict
from engine.core.config_files import changes_from
from engine.core.errors import FedtuiError
from engine.core.live_config import fork_changes
from engine.record import checkpoints
from engine.record.run_folders import find_run, read_run


@dataclass(frozen=True)
class ForkOrigin:
    run: str  # the parent's run id
    path: Path  # its folder
    round: int
    checkpoint: Path  # its global model after that round

    def recorded(self) -> dict[str, Any]:
        """As the fork's `run_started` event names its parent."""
        return {"run": self.run, "path": str(self.path), "round": self.round}

    def start(self) -> dict[str, Any]:
        """As the fork's ServerApp reads where its round 0 comes from."""
        return {"path": str(self.checkpoint), "round": self.round}

    def to_json(self) -> dict[str, Any]:
        return {**self.recorded(), "checkpoint": str(self.checkpoint)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ForkOrigin:
        return cls(value["run"], Path(value["path"]), value["round"], Path(value["checkpoint"]))


def parse_origin(spec: str) -> tuple[Path, int | None]:
    """`RUN[@ROUND]`: the run's folder (a path, or a sample run's name) and the round, None for
    the run's best."""
    name, at, number = spec.rpartition("@")
    if at and number.isascii() and number.isdigit():
        return find_run(name), int(number)
    if at and not Path(spec).exists():
        raise FedtuiError(f"--from {spec}: ROUND must be a round number, like RUN@2")
    return find_run(spec), None


def fork_point(
    spec: str, source: str | None, overrides: list[str] | tuple[str, ...]
) -> tuple[RunConfig, ForkOrigin]:
    """The config a fork of `spec` (RUN[@ROUND]) runs with and where it starts; FedtuiError
    (ConfigError for a key) saying why it cannot be forked so."""
    parent, number = parse_origin(spec)
    state = read_run(parent).state
    if number is None:
        if state.best_round is None:
            raise FedtuiError(f"run {parent.name} has no best round yet: name one, {spec}@ROUND")
        number = state.best_round
    saved = checkpoints.saved_rounds(parent / "checkpoints")
    if number not in saved:
        forkable = ", ".join(map(str, saved)) or "none"
        raise FedtuiError(
            f"run {parent.name} kept no global model of round {number}; rounds it can be "
            f'forked from: {forkable} (keep_checkpoints = "all" keeps every round)'
        )
    base = config_from_dict(state.config_history.for_round(number))
    changes = changes_from(source, overrides)
    defaults: dict[str, Any] = {"name": f"{base.name or base.strategy}-from-{number}"}
    if "rounds" not in changes:
        defaults["rounds"] = max(1, base.rounds - number)
    config = fork_changes(base, {**defaults, **changes})
    origin = ForkOrigin(state.run_id or parent.name, parent.resolve(), number, saved[number])
    return config, origin
