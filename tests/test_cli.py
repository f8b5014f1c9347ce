import csv
import io
import json
import os
import subprocess
import sys

import pytest

from engine.record import checkpoints, run_lock
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


def test_runs_tells_a_live_run_from_one_whose_controller_is_gone(tmp_path, capsys):
    live = write_run(tmp_path / "live", simple_run_events(run_id="live")[:-1])
    run_lock.hold(live)  # this process is its controller
    killed = write_run(tmp_path / "killed", simple_run_events(run_id="killed")[:-1])
    (killed / run_lock.LOCK_FILE).write_text("4194999 1.0\n")  # no such process now
    write_run(tmp_path / "unlocked", simple_run_events(run_id="unlocked")[:-1])

    code, out, _ = run_cli(capsys, "runs", str(tmp_path))

    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["killed", "interrupted"],
        ["live", "running"],
        ["unlocked", "interrupted"],
    ]


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


def test_an_unloadable_model_exits_2_before_a_run_folder_exists(tmp_path):
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
    assert not any(tmp_path.iterdir())


def replaced(number, line):
    """The run's lines with line `number` (1-based) replaced."""
    return lambda lines: lines[: number - 1] + [line] + lines[number:]


# simple_run_events' lines: 1 run_started, 2 round_done 0, 3 round_started 1, 4-5 its two
# client_round_done, 6 round_done 1, 7-10 round 2 likewise, 11 run_finished
ROUND_1_DONE = b'{"v":1,"t":1005,"type":"round_done","round":"one","eval_loss":7.0}\n'


@pytest.mark.parametrize(
    "damage, eval_losses, warning",
    [
        # what every crash can leave: read without a word
        pytest.param(
            lambda lines: lines + [b'{"v":1,"t":2000,"type":"round_do'],
            ["8.0", "7.0", "6.5"],
            None,
            id="torn last line",
        ),
        pytest.param(  # a power cut: the file grew, its last blocks never reached the disk
            lambda lines: lines[:8] + [b"\0" * len(b"".join(lines[8:]))],
            ["8.0", "7.0", ""],
            None,
            id="zeroed tail",
        ),
        # damage within the record: the rest is read, and the user told what was skipped
        pytest.param(
            replaced(4, b"garbage\n"),
            ["8.0", "7.0", "6.5"],
            "skipped 1 damaged line (4: not JSON)",
            id="garbage line",
        ),
        pytest.param(
            replaced(4, b"\0" * 80 + b"\n"),
            ["8.0", "7.0", "6.5"],
            "(4: zeroed bytes: data lost in a crash)",
            id="zeroed line",
        ),
        pytest.param(
            replaced(4, b'{"v":1,"t":1,"type":"notice","message":"caf\xe9"}\n'),
            ["8.0", "7.0", "6.5"],
            "(4: not UTF-8 text)",
            id="bytes that are not UTF-8",
        ),
        pytest.param(
            replaced(4, b"[1, 2, 3]\n"),
            ["8.0", "7.0", "6.5"],
            "(4: a JSON list, not an event object)",
            id="JSON that is not an event",
        ),
        pytest.param(
            replaced(2, b'{"v":1,"t":1001,"type":"round_done"}\n'),
            ["7.0", "6.5"],
            "(2: event 'round_done' lacks round",
            id="event lacking a field",
        ),
        pytest.param(
            replaced(6, ROUND_1_DONE),
            ["8.0", "", "6.5"],
            "(6: its 'round' is a str)",
            id="field of another type",
        ),
    ],
)
def test_export_reads_past_damage_saying_what_it_skipped(
    damage, eval_losses, warning, tmp_path, capsys
):
    run = write_run(tmp_path / "run", simple_run_events())
    record = run / "events.jsonl"
    record.write_bytes(b"".join(damage(record.read_bytes().splitlines(keepends=True))))
    damaged = record.read_bytes()

    code, out, err = run_cli(capsys, "export", str(run))

    assert code == 0
    assert [row["eval_loss"] for row in csv.DictReader(io.StringIO(out))] == eval_losses
    if warning is None:
        assert err == ""
    else:
        assert err.count("\n") == 1 and err.startswith(f"fedtui: warning: {record}: ")
        assert warning in err
    assert record.read_bytes() == damaged  # a reader never repairs


def test_replay_shows_what_a_damaged_run_holds_after_one_warning(tmp_path, capsys, monkeypatch):
    run = write_run(tmp_path / "run", simple_run_events())
    lines = (run / "events.jsonl").read_bytes().splitlines(keepends=True)
    (run / "events.jsonl").write_bytes(b"".join(replaced(4, b"garbage\n")(lines)))
    replayed = []

    class ReplayApp:
        def run(self):
            pass

    def replay_app(recorded, folder=None):
        replayed.extend(recorded)
        return ReplayApp()

    monkeypatch.setattr("tui.app.replay_app", replay_app)
    code, _, err = run_cli(capsys, "replay", str(run))

    assert code == 0 and err.count("\n") == 1 and "skipped 1 damaged line (4: not JSON)" in err
    ((name, events),) = replayed
    assert name == "run" and len(events) == len(lines) - 1


def test_runs_lists_a_damaged_run_after_one_warning(tmp_path, capsys):
    write_run(tmp_path / "a", simple_run_events(run_id="a"))
    damaged = write_run(tmp_path / "b", simple_run_events(run_id="b"))
    lines = (damaged / "events.jsonl").read_bytes().splitlines(keepends=True)
    (damaged / "events.jsonl").write_bytes(b"".join(replaced(4, b"\0" * 40 + b"\n")(lines)))

    code, out, err = run_cli(capsys, "runs", str(tmp_path))

    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["a", "completed"],
        ["b", "completed"],
    ]
    assert err.count("\n") == 1 and "b/events.jsonl: skipped 1 damaged line (4: zeroed" in err


def test_resume_refuses_what_cannot_be_resumed(tmp_path, capsys):
    completed = write_run(tmp_path / "done", simple_run_events())
    (completed / "config.toml").write_text("rounds = 2\n")
    checkpoints.save_round(completed / "checkpoints", 2, lambda tmp: None, {})
    stopped = write_run(tmp_path / "stopped", simple_run_events(status="stopped"))
    (stopped / "config.toml").write_text("rounds = 4\n")
    cases = [
        (["run", "--resume", "/no/such/run", "--headless"], "not a run folder: /no/such/run"),
        (
            ["run", "--resume", str(completed), "--headless"],
            "run done already has 2 of 2 rounds; --set rounds=N to go further",
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


def test_joining_in_plain_text_says_so_before_anything_else(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "join", "127.0.0.1:9", "--partition-id", "0",
         "--insecure", "--wait", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 1  # nobody serves there
    first = result.stdout.splitlines()[0]
    assert first.startswith("fedtui join: warning: joining in plain text (--insecure)")
