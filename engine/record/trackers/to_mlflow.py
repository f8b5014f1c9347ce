"""A run as one MLflow run, at the tracking URI MLflow itself resolves (MLFLOW_TRACKING_URI, else
its default), in MLFLOW_EXPERIMENT_ID's or MLFLOW_EXPERIMENT_NAME's experiment, else the default
one.

Through `MlflowClient` alone: MLflow's fluent API keeps one active run per thread, and a sweep's
members run side by side. A sweep member is nested under a parent run for its sweep, found by its
tag, so members in other threads or processes find the same one.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from engine.core.status import ENDED_WELL, Status

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from engine.record.trackers.mirror import RunStart

DEFAULT_EXPERIMENT_ID = "0"  # MLflow's own, in every store
RUN_TAG = "fedtui.run"
SWEEP_TAG = "fedtui.sweep"
ROLE_TAG = "fedtui.role"  # "sweep" on a sweep's parent run
PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests a run under another
BATCH = 100  # MLflow takes at most 100 params or tags in one call

_parent_lock = threading.Lock()  # the members of a sweep in this process ask one at a time


class MlflowTracker:
    name = "mlflow"

    def __init__(self) -> None:
        self._client: MlflowClient | None = None
        self.run_id: str | None = None
        self._parent_id: str | None = None

    def start(self, start: RunStart) -> None:
        from mlflow.entities import Param  # slow: only for a run that uses it
        from mlflow.tracking import MlflowClient

        client = self._client = MlflowClient()
        experiment = _experiment_id(client)
        tags = {RUN_TAG: start.run.name}
        if start.run.group is not None:
            self._parent_id = _sweep_parent(client, experiment, start.run.group, start.wall_time)
            tags |= {SWEEP_TAG: start.run.group, PARENT_TAG: self._parent_id}
        found = _find(client, experiment, tags) if start.resumed else None
        if found is not None:  # a resumed run goes on in its MLflow run; its params are set
            self.run_id = found
            client.update_run(found, status="RUNNING")
            return
        run = client.create_run(
            experiment, start_time=_ms(start.wall_time), tags=tags, run_name=start.run.name
        )
        self.run_id = run.info.run_id
        params = [Param(key, value) for key, value in start.params.items()]
        for first in range(0, len(params), BATCH):
            client.log_batch(self.run_id, params=params[first : first + BATCH])

    def metrics(self, values: dict[str, float], step: int, wall_time: float) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(key, value, _ms(wall_time), step) for key, value in values.items()]
        self._require().log_batch(self._run(), metrics=metrics)

    def text(self, tag: str, text: str, step: int, wall_time: float) -> None:
        self._require().set_tag(self._run(), f"{tag}.round_{step}", text)

    def finish(self, summary: dict[str, Any], wall_time: float) -> None:
        from mlflow.entities import Metric, RunTag

        client, run_id = self._require(), self._run()
        numbers = {key: value for key, value in summary.items() if isinstance(value, (int, float))}
        metrics = [Metric(key, float(value), _ms(wall_time), 0) for key, value in numbers.items()]
        tags = [RunTag(f"fedtui.{key}", str(value)) for key, value in summary.items()]
        client.log_batch(run_id, metrics=metrics, tags=tags)
        status = "FINISHED" if summary["status"] in ENDED_WELL else "FAILED"
        status = "KILLED" if summary["status"] == Status.ABORTED else status
        client.set_terminated(run_id, status=status, end_time=_ms(wall_time))
        if self._parent_id is not None:  # the sweep ends when its last member does
            client.set_terminated(self._parent_id, status="FINISHED", end_time=_ms(wall_time))

    def location(self) -> str:
        import mlflow

        return f"MLflow run {self.run_id} at {mlflow.get_tracking_uri()}"

    def _require(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("the MLflow run has not started")
        return self._client

    def _run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("the MLflow run has not started")
        return self.run_id


def _experiment_id(client: MlflowClient) -> str:
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if not name:
        return DEFAULT_EXPERIMENT_ID
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _sweep_parent(client: MlflowClient, experiment: str, sweep: str, wall_time: float) -> str:
    """The sweep's parent run: the oldest one tagged with it, made if there is none. Two processes
    that both made one keep the older, and the other is deleted."""
    tags = {SWEEP_TAG: sweep, ROLE_TAG: "sweep"}
    with _parent_lock:
        found = _find(client, experiment, tags)
        if found is not None:
            return found
        made = client.create_run(
            experiment, start_time=_ms(wall_time), tags=tags, run_name=sweep
        ).info.run_id
        oldest = _find(client, experiment, tags) or made
        if oldest != made:
            client.delete_run(made)
        return oldest


def _find(client: MlflowClient, experiment: str, tags: dict[str, str]) -> str | None:
    """The oldest run with these tags, if any (a value with a quote is never looked up: MLflow's
    filter strings cannot escape one)."""
    if any("'" in value for value in tags.values()):
        return None
    wanted = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    runs = client.search_runs([experiment], filter_string=wanted)
    oldest = min(runs, key=lambda run: (run.info.start_time, run.info.run_id), default=None)
    return oldest.info.run_id if oldest is not None else None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
