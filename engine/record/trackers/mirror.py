"""A run's events as experiment trackers record them, the same for a live run and a recorded one.

    mirror = TrackerMirror(trackers, TrackedRun("run-id", group="sweep-id"), warn=print)
    for event in events:            # live: engine.record.trackers.live_mirror feeds them
        mirror.apply(event)

The events are folded into a `RunState` (the views' own fold); as each round ends its figures go to
every tracker at step = the round, wall time = the `round_done` event's recorded time, so a live
run and its later export record the same series. Metric names are one set for every tracker
(MLflow refuses `@`: pass@1 is `pass_at_1`). A tracker that raises is dropped with one warning and
the run goes on without it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.core import events as ev
from engine.core.config import TRACKERS
from engine.core.errors import ConfigError
from engine.record.run_state import RunState

# What each tracker needs installed: the module that proves it, and fedtui's extra that brings it.
REQUIRED_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
assert set(REQUIRED_MODULES) == set(TRACKERS)


@dataclass(frozen=True)
class TrackedRun:
    """Who a tracker's run is: the fedtui run's name (its folder's), and its sweep's, if any."""

    name: str
    group: str | None = None


@dataclass(frozen=True)
class RunStart:
    """What a tracker is told when the run starts (or resumes, `resumed` then true)."""

    run: TrackedRun
    wall_time: float
    params: dict[str, str]  # the resolved config, flattened: "early_stopping.patience"
    resumed: bool


class Tracker(Protocol):
    name: str

    def start(self, start: RunStart) -> None: ...
    def metrics(self, values: dict[str, float], step: int, wall_time: float) -> None: ...
    def text(self, tag: str, text: str, step: int, wall_time: float) -> None: ...
    def finish(self, summary: dict[str, Any], wall_time: float) -> None: ...
    def location(self) -> str: ...


def require(names: list[str]) -> None:
    """ConfigError, one line naming the extra, for a tracker whose library is not installed."""
    for name in names:
        if importlib.util.find_spec(REQUIRED_MODULES[name]) is None:
            raise ConfigError(
                f"report_to {name} needs {REQUIRED_MODULES[name]}, which is not installed: "
                f"pip install 'fedtui[{name}]'"
            )


def open_tracker(
    name: str, tensorboard_dir: Path, notify: Callable[[str], None] = lambda message: None
) -> Tracker:
    """The tracker of that name; only it imports its library, and only when it starts."""
    if name == "tensorboard":
        from engine.record.trackers.to_tensorboard import TensorBoardTracker

        return TensorBoardTracker(tensorboard_dir)
    if name == "mlflow":
        from engine.record.trackers.to_mlflow import MlflowTracker

        return MlflowTracker()
    from engine.record.trackers.to_wandb import WandbTracker

    return WandbTracker(notify)


class TrackerMirror:
    def __init__(
        self,
        trackers: list[Tracker],
        run: TrackedRun,
        warn: Callable[[str], None],
    ) -> None:
        self.trackers = list(trackers)
        self.run = run
        self.state = RunState()
        self._warn = warn
        self._started = False
        self._changes: list[str] = []  # config changes not yet told: they apply from a round
        self._finished = False

    def apply(self, event: ev.Event) -> None:
        """Fold one event in; tell the trackers what it completes."""
        self.state.apply(event)
        kind, wall_time = event["type"], event.get("t") or 0.0
        if kind in (ev.RUN_STARTED, ev.RUN_RESUMED):
            # a stopped run that goes on opens its trackers' runs again, as its new controller
            # does live; one whose fedtui was killed (no run_finished) just goes on in them
            if not self._started or self._finished:
                resumed = kind == ev.RUN_RESUMED
                start = RunStart(self.run, wall_time, flat_params(self.state.config), resumed)
                self._each("start", lambda tracker: tracker.start(start))
            self._started, self._finished = True, False
        elif kind == ev.CONFIG_CHANGED:
            self._changes.append(
                f"from round {event['round']}: {event['key']} {event['old']!r} -> "
                f"{event['new']!r} ({event.get('source') or 'unknown source'})"
            )
        elif kind == ev.ROUND_STARTED:
            self._tell_changes(event["round"], wall_time)
        elif kind == ev.ROUND_DONE:
            values = round_metrics(self.state, event["round"])
            self._each(
                f"round {event['round']}",
                lambda tracker: tracker.metrics(values, event["round"], wall_time),
            )
        elif kind == ev.RUN_FINISHED:
            self.finish(wall_time)

    def finish(self, wall_time: float | None = None) -> None:
        """The run's end: its status, best round and loss. A recorded run that never finished
        (its fedtui was killed) ends here with the status its record has."""
        if self._finished or not self._started:
            return
        self._finished = True
        when = wall_time if wall_time is not None else self.state.last_event_at or 0.0
        self._tell_changes(self.state.current_round + 1, when)
        summary = run_summary(self.state)
        self._each("end", lambda tracker: tracker.finish(summary, when))

    def _tell_changes(self, step: int, wall_time: float) -> None:
        if self._changes and self._started:
            text = "\n\n".join(self._changes)
            self._changes = []
            self._each(
                "config changes",
                lambda tracker: tracker.text("config_changes", text, step, wall_time),
            )

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as err:  # a tracker's failure costs it, never the run
                self.trackers.remove(tracker)
                self._warn(
                    f"tracker {tracker.name} failed to record the {what} "
                    f"({type(err).__name__}: {err}); it gets nothing more of this run"
                )


def round_metrics(state: RunState, number: int) -> dict[str, float]:
    """A finished round's figures, by the names every tracker gets."""
    result = state.rounds[number]
    values: dict[str, Any] = {
        "eval_loss": result.eval_loss,
        "train_loss": result.train_loss,
        "round_seconds": result.seconds,
        "bytes_sent": result.bytes_sent,
        "bytes_received": result.bytes_received,
    }
    if number > 0:
        values["learning_rate"] = (
            result.learning_rate
            if result.learning_rate is not None
            else state.config_history.for_round(number).get("learning_rate")
        )
    for k, share in result.pass_at.items():
        values[f"pass_at_{k}"] = share
    for client, loss in result.client_train_loss.items():
        values[f"client_{client}/train_loss"] = loss
    for client, own_eval in result.client_eval_loss.items():
        values[f"client_{client}/eval_loss"] = own_eval
    for client, peak in result.client_peak_memory.items():
        values[f"client_{client}/peak_memory_bytes"] = peak
    return {
        name: float(value)
        for name, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def run_summary(state: RunState) -> dict[str, Any]:
    """How the run ended, as each tracker's summary holds it."""
    done = [state.rounds[n] for n in sorted(state.rounds) if state.rounds[n].done]
    return {
        "status": str(state.status),
        "rounds_completed": state.rounds_completed,
        "best_round": state.best_round,
        "best_eval_loss": state.best_eval_loss,
        "final_eval_loss": done[-1].eval_loss if done else None,
    }


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as hyper-parameters: dotted keys, each value as text (lists as JSON)."""
    params: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            params.update(flat_params(value, f"{prefix}{key}."))
        else:
            params[prefix + key] = value if isinstance(value, str) else json.dumps(value)
    return params


def mirror_recorded(
    events: list[ev.Event], tracker: Tracker, run: TrackedRun, warn: Callable[[str], None]
) -> None:
    """A recorded run into a tracker, through the mirror a live run uses: the same series."""
    mirror = TrackerMirror([tracker], run, warn)
    for event in events:
        mirror.apply(event)
    mirror.finish()
