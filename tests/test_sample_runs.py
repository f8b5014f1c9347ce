"""sample_runs/: what ships with fedtui replays, and says what its sources say."""

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tui.app
from engine.record.run_folders import list_runs, open_run, read_run_events, sample_runs_folder
from tests.factories import simple_run_events, write_run
from tui.cli import main

SAMPLE_RUNS = sample_runs_folder()
SEED_RUN = SAMPLE_RUNS / "seed-opt350m-codeparrot-fedprox-mu0.1"


def report_table(heading):
    """The report's own `| round | value |` rows, as printed (strings)."""
    text = (SEED_RUN / "report.txt").read_text()
    section = text[text.index(heading) :].split("####")[0]
    return dict(re.findall(r"^\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|", section, re.MULTILINE))


def test_the_seed_run_exports_exactly_the_reports_numbers(capsys):
    assert main(["export", str(SEED_RUN), "--format", "csv"]) == 0
    rows = {row["round"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    eval_table = report_table("Centralized Eval Loss")
    train_table = report_table("Distributed Train Loss")
    assert sorted(eval_table, key=int) == [str(r) for r in range(10)]
    assert sorted(train_table, key=int) == [str(r) for r in range(1, 11)]
    for number, value in eval_table.items():
        assert rows[number]["eval_loss"] == value
    for number, value in train_table.items():
        assert rows[number]["train_loss"] == value
    assert rows["10"]["eval_loss"] == "" and rows["0"]["train_loss"] == ""  # not in the report
    assert {row["clients"] for row in rows.values()} == {""}  # no per-client detail to invent


def test_the_seed_run_keeps_the_reports_setup_and_runtime():
    state = open_run(SEED_RUN)
    assert state.imported_from == "report: report.txt"
    assert (state.best_round, state.best_eval_loss) == (3, 2.021)
    assert state.elapsed == pytest.approx(26_969)
    config = state.config
    assert (config["model"], config["dataset"]) == (
        "facebook/opt-350m",
        "codeparrot/codeparrot-clean-valid",
    )
    assert (config["num_clients"], config["samples_per_client"], config["local_epochs"]) == (
        3,
        1000,
        3,
    )
    assert (config["strategy"], config["proximal_mu"], config["rounds"]) == ("fedprox", 0.1, 10)
    assert state.clients == {}


def test_every_sample_run_replays_without_error():
    listings = list_runs(SAMPLE_RUNS)
    assert listings and all(listing.problem is None for listing in listings)
    for listing in listings:
        assert listing.state.finished, listing.path.name


SAMPLE_NAMES = sorted(p.name for p in SAMPLE_RUNS.iterdir() if (p / "events.jsonl").is_file())
SAMPLE_SWEEPS = sorted(p.name for p in SAMPLE_RUNS.iterdir() if (p / "sweep.json").is_file())


def test_fedtui_runs_lists_the_sample_runs_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    runs, *sweeps = out.split("\n\n")
    assert [line.split()[0] for line in runs.splitlines()[2:]] == SAMPLE_NAMES
    assert [sweep.splitlines()[0].split()[1] for sweep in sweeps] == SAMPLE_SWEEPS
    assert "sweep fedprox-mu-sweep (completed, 3 members, proximal_mu=0.01,0.1,1.0)" in out


def test_the_sample_sweeps_are_a_mu_sweep_and_a_dirichlet_alpha_pair(capsys):
    assert main(["export", "fedprox-mu-sweep"]) == 0
    mu = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["member"] for row in mu] == [f"proximal_mu={m}" for m in ("0.01", "0.1", "1.0")]
    assert all(row["status"] == "completed" and row["rounds"] == "8" for row in mu)
    pair = {
        folder.name: open_run(folder).partition["clients"]
        for folder in (SAMPLE_RUNS / "dirichlet-alpha-sweep").iterdir()
        if folder.is_dir()
    }
    sources = {name: max(c["sources"] for c in clients) for name, clients in pair.items()}
    assert sources["dirichlet_alpha=0.1"] < min(
        c["sources"] for c in pair["dirichlet_alpha=10"]
    )  # a smaller alpha gives every client fewer distinct sources


def test_the_strategy_sweep_compares_four_strategies_on_one_dirichlet_split(capsys):
    assert main(["export", "strategy-sweep"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    strategies = ("fedavg", "fedprox", "scaffold", "fedadam")
    assert [row["member"] for row in rows] == [f"strategy={name}" for name in strategies]
    assert all(row["status"] == "completed" and row["rounds"] == "8" for row in rows)
    members = [open_run(SAMPLE_RUNS / "strategy-sweep" / row["member"]) for row in rows]
    assert [state.config["strategy"] for state in members] == list(strategies)
    # one split: the same seed, alpha 0.1, and so the same clients' sources
    assert {(s.config["seed"], s.config["dirichlet_alpha"]) for s in members} == {(0, 0.1)}
    assert all(state.partition == members[0].partition for state in members)
    scaffold = members[2].rounds[1]  # the variates: the model's size again, each way
    sent, received = scaffold.variate_bytes
    assert sent == pytest.approx(scaffold.bytes_sent / 2, rel=1e-3)
    assert received == pytest.approx(scaffold.bytes_received / 2, rel=1e-3)


def test_fedtui_runs_lists_the_sample_runs_then_this_folders_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "runs" / "20261125-101500-default", simple_run_events())
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    mine = out[out.index("runs in ./runs:") :]
    assert mine.splitlines()[2].split()[:2] == ["20261125-101500-default", "completed"]


def test_fedtui_replay_opens_a_sample_run_by_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opened = []

    class Replay:
        def __init__(self, recorded, folder):
            opened.append((recorded, folder))

        def run(self):
            pass

    monkeypatch.setattr(tui.app, "replay_app", Replay)
    assert main(["replay", SEED_RUN.name, "fedavg"]) == 0
    ((recorded, folder),) = opened
    assert [name for name, _ in recorded] == [SEED_RUN.name, "fedavg"]
    assert recorded[0][1] == read_run_events(SEED_RUN) and folder == SEED_RUN


def test_a_folder_of_that_name_here_wins_over_the_sample_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "fedavg", simple_run_events(rounds=((9.0, None), (8.5, 8.7))))
    assert main(["export", "fedavg"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("0,9.0,")


def test_the_installed_fedtui_finds_the_sample_runs_from_another_folder(tmp_path):
    fedtui = Path(sys.executable).parent / "fedtui"
    if not fedtui.is_file():
        pytest.skip("fedtui is not installed in this environment (pip install -e .)")
    listed = subprocess.run(
        [fedtui, "runs"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert all(name in listed for name in SAMPLE_NAMES + SAMPLE_SWEEPS)
    exported = subprocess.run(
        [fedtui, "export", SEED_RUN.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert exported.splitlines()[1] == "0,2.987,,,,,,,,"
