"""report_to and `fedtui export --to`: a run's events mirrored into TensorBoard, MLflow and W&B,
read back with each tracker's own reader; a tracker that is missing or fails."""

import pytest

from engine.core import events as ev
from engine.record.recorder import EventRecorder
from engine.record.run_folders import find_run, read_run
from engine.record.trackers.live_mirror import TENSORBOARD_FOLDER, LiveMirror
from engine.record.trackers.mirror import TrackedRun, mirror_recorded
from engine.record.trackers.to_tensorboard import TensorBoardTracker
from engine.record.trackers.to_wandb import WandbTracker
from engine.run.sweep import read_sweep
from tests.factories import simple_run_events, write_run
from tests.tracker_reading import (
    assert_same_series,
    mlflow_history,
    mlflow_runs,
    recorded_round_ends,
    tensorboard_scalars,
    wandb_offline_run,
)
from tui.cli import main


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """MLflow's tracking URI pointed at a store of the test's own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fedtui: error: "), err
    return err


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow", "wandb"])
def test_a_tracker_not_installed_is_refused_before_the_run_starts_naming_its_extra(
    tracker, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(__import__("sys").modules, tracker, None)  # import tracker: ImportError
    runs = tmp_path / "runs"
    argv = ["run", "--headless", "--runs-dir", str(runs), "--set", f'report_to=["{tracker}"]']
    assert main(argv) == 2
    assert f"pip install 'fedtui[{tracker}]'" in one_line_error(capsys)
    assert not runs.exists()
    assert main(["export", "fedavg", "--to", tracker]) == 2
    assert f"pip install 'fedtui[{tracker}]'" in one_line_error(capsys)


@pytest.mark.parametrize(
    "setting, message",
    [
        ('report_to=["comet"]', "takes a list of tensorboard, mlflow, wandb; got 'comet'"),
        ('report_to=["mlflow", "mlflow"]', "names a value twice"),
        ("report_to=mlflow", "must be a list of strings"),
    ],
)
def test_a_bad_report_to_is_refused_in_one_line(setting, message, tmp_path, capsys):
    assert main(["run", "--headless", "--runs-dir", str(tmp_path), "--set", setting]) == 2
    assert message in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--format", "csv", "--to", "tensorboard"], "--format prints metrics, --to writes"),
        (["--to", "mlflow", "--out", "x"], "--out is for --to tensorboard"),
        (["--out", "x"], "--out is where --to tensorboard writes"),
    ],
)
def test_export_options_that_do_not_go_together_are_one_line(argv, message, capsys):
    assert main(["export", "fedavg", *argv]) == 2
    assert message in one_line_error(capsys)


def test_a_tracker_failing_mid_run_is_a_warning_and_the_run_and_its_record_go_on(
    tmp_path, monkeypatch
):
    def fails_at_round_3(self, values, step, wall_time):
        if step == 3:
            raise OSError("disk full")
        original(self, values, step, wall_time)

    original = TensorBoardTracker.metrics
    monkeypatch.setattr(TensorBoardTracker, "metrics", fails_at_round_3)
    recorded = read_run(find_run("fedavg")).events
    run_dir = tmp_path / "fedavg"
    run_dir.mkdir()
    record = EventRecorder(run_dir / "events.jsonl")
    record.subscribe(LiveMirror(["tensorboard"], run_dir, record.write))
    record.open()
    for event in recorded:  # as the controller writes them: every one, in order
        record.write({key: value for key, value in event.items() if key != "v"})
    record.close()

    written = ev.read_events(run_dir / "events.jsonl")
    warnings = [e for e in written if e["type"] == ev.WARNING and "tensorboard" in e["message"]]
    assert len(warnings) == 1
    assert "round 3" in warnings[0]["message"] and "disk full" in warnings[0]["message"]
    assert [e for e in written if e is not warnings[0]] == recorded  # the record is whole
    scalars = tensorboard_scalars(run_dir / TENSORBOARD_FOLDER, "eval_loss")
    assert sorted(scalars) == [0, 1, 2]  # what came before the failure stays


def test_export_of_a_sweep_to_tensorboard_writes_one_series_per_member(tmp_path, capsys):
    out = tmp_path / "tb"
    assert main(["export", "fedprox-mu-sweep", "--to", "tensorboard", "--out", str(out)]) == 0
    sweep = find_run("fedprox-mu-sweep")
    members = [member["name"] for member in read_sweep(sweep).members]
    assert sorted(path.name for path in out.iterdir()) == sorted(members)
    for member in members:
        expected = recorded_round_ends(read_run(sweep / member).events)
        assert_same_series(tensorboard_scalars(out / member, "eval_loss"), expected)
    assert capsys.readouterr().out.count("TensorBoard event files in") == len(members)
    # again into the same folder would double every series: refused
    assert main(["export", "fedprox-mu-sweep", "--to", "tensorboard", "--out", str(out)]) == 2
    assert "already holds TensorBoard event files" in one_line_error(capsys)


def test_export_to_mlflow_reads_back_with_mlflows_client(mlflow_store, capsys):
    assert main(["export", "fedavg", "--to", "mlflow"]) == 0
    recorded = read_run(find_run("fedavg"))
    (run,) = mlflow_runs().values()
    assert run.info.run_name == "fedavg" and run.info.status == "FINISHED"
    assert_same_series(mlflow_history(run, "eval_loss"), recorded_round_ends(recorded.events))
    rounds = recorded.state.rounds
    train = {n: r.train_loss for n, r in rounds.items() if r.train_loss is not None}
    assert {n: v for n, (v, _) in mlflow_history(run, "train_loss").items()} == train
    client_1 = {n: r.client_train_loss[1] for n, r in rounds.items() if r.client_train_loss}
    assert {n: v for n, (v, _) in mlflow_history(run, "client_1/train_loss").items()} == client_1
    params = run.data.params
    assert params["strategy"] == "fedavg" and params["early_stopping.patience"] == "2"
    assert run.data.metrics["best_eval_loss"] == recorded.state.best_eval_loss
    assert run.data.tags["fedtui.status"] == "completed"


def test_export_of_a_sweep_to_mlflow_nests_its_members_under_one_parent(mlflow_store):
    assert main(["export", "fedprox-mu-sweep", "--to", "mlflow"]) == 0
    runs = mlflow_runs()
    parent = runs.pop("fedprox-mu-sweep")
    assert sorted(runs) == ["proximal_mu=0.01", "proximal_mu=0.1", "proximal_mu=1.0"]
    assert {run.data.tags["mlflow.parentRunId"] for run in runs.values()} == {parent.info.run_id}
    assert {run.data.params["proximal_mu"] for run in runs.values()} == {"0.01", "0.1", "1.0"}


def test_wandb_offline_holds_the_runs_rounds_and_its_final_eval_loss(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no API key anywhere
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    events = read_run(find_run("fedavg")).events
    notices, warnings = [], []
    tracker = WandbTracker(notices.append)
    mirror_recorded(events, tracker, TrackedRun("fedavg", "a-sweep"), warnings.append)

    assert warnings == []
    assert len(notices) == 1 and "offline" in notices[0]
    history, summary = wandb_offline_run(tmp_path)
    rounds = recorded_round_ends(events)
    final = rounds[max(rounds)][0]
    assert summary["final_eval_loss"] == final and summary["status"] == "completed"
    logged = {row["_step"]: (row["eval_loss"], row["_timestamp"]) for row in history}
    assert_same_series(logged, rounds)


def test_a_stopped_run_that_went_on_is_one_mlflow_run_to_its_end(mlflow_store, tmp_path):
    stopped = simple_run_events(rounds=((8.0, None), (7.0, 7.5)), status="stopped")
    went_on = simple_run_events(rounds=((8.0, None), (7.0, 7.5), (6.5, 6.9)))
    resumed = dict(type_=ev.RUN_RESUMED, from_round=1, config=went_on[0]["config"])
    rest = [e for e in went_on if e.get("round", 0) >= 2 or e["type_"] == ev.RUN_FINISHED]
    run = write_run(tmp_path / "r1", [*stopped, resumed, *rest])
    assert main(["export", str(run), "--to", "mlflow"]) == 0
    (exported,) = mlflow_runs().values()
    assert {n: v for n, (v, _) in mlflow_history(exported, "eval_loss").items()} == {
        0: 8.0,
        1: 7.0,
        2: 6.5,
    }
    assert (exported.info.status, exported.data.tags["fedtui.status"]) == ("FINISHED", "completed")
