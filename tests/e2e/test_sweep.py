"""A real sweep from the command line: two member runs in one sweep folder, listed and exported
as one."""

import csv
import io
import json
import subprocess
import sys

import pytest

from engine.record.run_folders import SWEEP_FILE
from tests.e2e.test_faults import processes_of

pytestmark = pytest.mark.e2e

FEDTUI = [sys.executable, "-m", "tui.cli"]
SMALL = ["--set", "samples_per_client=32", "--set", "eval_samples=32"]


def fedtui(tmp_path, *args, timeout=900):
    return subprocess.run(
        [*FEDTUI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )


def test_a_sweep_of_two_mu_values_runs_both_members_and_lists_and_exports_them(tmp_path):
    sweep = subprocess.Popen(
        [*FEDTUI, "sweep", "--grid", "proximal_mu=0.01,1.0", "--set", "rounds=2", *SMALL,
         "--headless"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = sweep.communicate(timeout=900)

    assert sweep.returncode == 0, out[-2000:] + err
    assert processes_of(sweep.pid) == []  # every member's processes are gone
    (sweep_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((sweep_dir / SWEEP_FILE).read_text())
    assert record["status"] == "completed"
    assert [(m["name"], m["status"]) for m in record["members"]] == [
        ("proximal_mu=0.01", "completed"),
        ("proximal_mu=1.0", "completed"),
    ]
    for member in ("proximal_mu=0.01", "proximal_mu=1.0"):
        assert (sweep_dir / member / "events.jsonl").is_file()
        assert f"[{member}] run completed: 2 rounds" in out

    listed = fedtui(tmp_path, "runs", "runs")
    assert listed.returncode == 0
    assert f"sweep {sweep_dir.name} (completed, 2 members" in listed.stdout
    assert "FedProx mu=0.01" in listed.stdout and "FedProx mu=1" in listed.stdout

    exported = fedtui(tmp_path, "export", str(sweep_dir))
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["member"], r["status"], r["rounds"]) for r in rows] == [
        ("proximal_mu=0.01", "completed", "2"),
        ("proximal_mu=1.0", "completed", "2"),
    ]
    assert all(float(r["final_eval_loss"]) < 8.3 for r in rows)  # both trained
