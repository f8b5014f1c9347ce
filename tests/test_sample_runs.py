"""sample_runs/: what ships with fedtui replays, and says what its sources say."""

import csv
import io
import re
from pathlib import Path

import pytest

from engine.runs import list_runs, open_run
from tui.cli import main

SAMPLE_RUNS = Path(__file__).parent.parent / "sample_runs"
SEED_RUN = SAMPLE_RUNS / "seed-opt350m-codeparrot-fedprox-mu0.1"


def report_table(heading):
    """The report's own `| round | value |` rows, as printed (strings)."""
    text = (SEED_RUN / "report.txt").read_text()
    section = text[text.index(heading):].split("####")[0]
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
    assert (config["model"], config["dataset"]) == ("facebook/opt-350m",
                                                    "codeparrot/codeparrot-clean-valid")
    assert (config["num_clients"], config["samples_per_client"], config["local_epochs"]) == (
        3, 1000, 3)
    assert (config["strategy"], config["proximal_mu"], config["rounds"]) == ("fedprox", 0.1, 10)
    assert state.clients == {}


def test_every_sample_run_replays_without_error():
    listings = list_runs(SAMPLE_RUNS)
    assert listings and all(listing.problem is None for listing in listings)
    for listing in listings:
        assert listing.state.finished, listing.path.name
