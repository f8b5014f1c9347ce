"""What experiment trackers hold, read back with each tracker's own reader: TensorBoard's
EventAccumulator, MLflow's client, W&B's own record format (its offline run file)."""

import json
import struct
from pathlib import Path

import pytest

from engine.core import events as ev
from tests.waiting import wait_for


def recorded_round_ends(events):
    """Each round's central eval loss and wall time, as events.jsonl has them."""
    return {e["round"]: (e["eval_loss"], e["t"]) for e in events if e["type"] == ev.ROUND_DONE}


def tensorboard_scalars(folder, tag):
    """{step: (value, wall_time)} of one scalar series in a folder of TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {s.step: (s.value, s.wall_time) for s in accumulator.Scalars(tag)}


def mlflow_runs():
    """Every MLflow run at the tracking URI MLflow resolves, by its name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return {run.info.run_name: run for run in client.search_runs(["0"])}


def mlflow_history(run, key):
    """{step: (value, wall_time)} of one metric of an MLflow run."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient().get_metric_history(run.info.run_id, key)
    return {m.step: (m.value, m.timestamp / 1000) for m in history}


# W&B writes an offline run as a LevelDB-format log of its protobuf records (`run-<id>.wandb`):
# a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header (crc, length, type).
WANDB_HEADER = 7
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_offline_run(wandb_dir):
    """(history rows, summary) of the one offline W&B run under `wandb_dir`.

    wandb-core writes the log whole when it closes the run's stream, which `run.finish()` asks
    for without waiting: the run is read once its exit record, the last one, is there."""
    (path,) = Path(wandb_dir).glob("wandb/offline-run-*/run-*.wandb")
    records = wait_for(lambda: _ended_wandb_records(path), timeout=60.0, interval=0.1)
    history, summary = [], {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            history.append(
                {
                    i.key or ".".join(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
        elif record.WhichOneof("record_type") == "summary":
            for update in record.summary.update:
                summary[update.key or ".".join(update.nested_key)] = json.loads(update.value_json)
    return history, summary


def _ended_wandb_records(path):
    """The records of a W&B run log that ends with its exit record, else None."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    records, chunk, position = [], b"", WANDB_HEADER
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if (kind == 0 and length == 0) or position + 7 + length > len(data):  # not all written
            break
        chunk += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    ended = records and records[-1].WhichOneof("record_type") == "exit"
    return records if ended else None


def assert_same_series(actual, expected):
    """Two {step: (value, wall_time)} series agree: values to float32 (TensorBoard keeps them so),
    wall times to the millisecond (MLflow keeps them so)."""
    assert sorted(actual) == sorted(expected)
    for step, (value, wall_time) in expected.items():
        assert actual[step][0] == pytest.approx(value, rel=1e-6), step
        assert actual[step][1] == pytest.approx(wall_time, abs=1e-3), step
