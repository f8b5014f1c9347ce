import csv
import io
import json
import os
import subprocess
import sys

import pytest

from engine import events as ev
from tests.factories import simple_run_events, write_run
from tui.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_csv_prints_one_row_per_round(tmp_path, capsys):
    run = write_run(tmp_path / "run", simple_run_events(rounds=((8.0, None), (7.0, 7.5))))
    code, out, _ = run_cli(capsys, "export", str(run), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:3] == ["round", "eval_loss", "train_loss"]
    assert [(r["round"], r["eval_loss"], r["train_loss"], r["clients"]) for r in rows] == [
        ("0", "8.0", "", "0"),
        ("1", "7.0", "7.5", "2"),
    ]


def test_export_json_carries_the_best_round(tmp_path, capsys):
    run = write_run(
        tmp_path / "run", simple_run_events(rounds=((8.0, None), (6.0, 7.5), (6.5, 7.0)))
    )
    code, out, _ = run_cli(capsys, "export", str(run), "--format", "json")
    exported = json.loads(out)
    assert (code, exported["best_round"], exported["best_eval_loss"]) == (0, 1, 6.0)
    assert [r["eval_loss"] for r in exported["rounds"]] == [8.0, 6.0, 6.5]


def test_runs_lists_status_rounds_and_best_eval_loss(tmp_path, capsys):
    write_run(tmp_path / "a", simple_run_events(run_id="a", rounds=((8.0, None), (6.0, 7.0))))
    write_run(tmp_path / "b", simple_run_events(run_id="b", status="stopped"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "events.jsonl").write_text("not json\n{}\n")
    code, out, _ = run_cli(capsys, "runs", str(tmp_path))
    lines = out.splitlines()
    assert code == 0
    assert lines[1].split()[:5] == ["a", "completed", "1/1", "6.0000", "1"]
    assert lines[2].split()[:3] == ["b", "stopped", "2/2"]
    assert lines[3].split()[:2] == ["c", "unreadable"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--headless", "--set", "rounds=0"], "config key 'rounds' must be >= 1"),
        (
            ["run", "no-such-preset", "--headless"],
            "no config file or preset named 'no-such-preset'",
        ),
        (["run", "--headless", "--set", "nonsense"], "--set expects key=value"),
        (["export", "/no/such/run"], "not a run folder: /no/such/run"),
        (["runs", "/no/such/dir"], "not a folder: /no/such/dir"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["export", "x", "--format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_a_corrupt_event_log_exits_2_and_names_the_line(tmp_path, capsys):
    run = write_run(tmp_path / "run", simple_run_events())
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"v":1,"t":1,"type":"round_done"}\n'
    (run / "events.jsonl").write_text("".join(lines))
    code, _, err = run_cli(capsys, "export", str(run))
    assert code == 2
    assert "events.jsonl:2: not a valid event" in err and err.count("\n") == 1


def test_an_unloadable_model_exits_2_and_keeps_the_run_record(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "run",
            "--headless",
            "--runs-dir",
            str(tmp_path),
            "--set",
            "model=facebook/opt-350m",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fedtui: error: cannot load model 'facebook/opt-350m': it is not in the local Hugging "
        "Face cache and HF_HUB_OFFLINE is set"
    ]
    (run,) = tmp_path.iterdir()
    recorded = ev.read_events(run / "events.jsonl")
    assert recorded[-1]["type"] == ev.RUN_FINISHED and recorded[-1]["status"] == "failed"
    assert (run / "config.toml").is_file()


def test_resume_refuses_what_cannot_be_resumed(tmp_path, capsys):
    completed = write_run(tmp_path / "done", simple_run_events())
    stopped = write_run(tmp_path / "stopped", simple_run_events(status="stopped"))
    (stopped / "config.toml").write_text("rounds = 4\n")
    cases = [
        (["run", "--resume", "/no/such/run", "--headless"], "not a run folder: /no/such/run"),
        (
            ["run", "--resume", str(completed), "--headless"],
            "run done is completed: only a stopped, aborted or failed run can be resumed",
        ),
        (
            ["run", "--resume", str(stopped), "--headless"],
            "run stopped has no saved global model to resume from",
        ),
        (["run", "default", "--resume", str(stopped)], "--resume takes its config from the run"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, argv
