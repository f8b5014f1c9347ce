"""The GPU check rehearsed on the CPU: every case it will run on a GPU runs here, through the
same code, with the embedded model, so the GPU's few minutes are not spent finding its bugs."""

import os

import pytest

from benchmarks import gpu_check
from tests.e2e.test_faults import processes_of

pytestmark = pytest.mark.e2e


def test_the_gpu_check_runs_every_case_and_writes_its_table(tmp_path):
    table_file = tmp_path / "gpu_check.md"
    argv = ["--rehearse", "--runs-dir", str(tmp_path / "runs"), "--out", str(table_file)]

    assert gpu_check.main(argv) == 0

    report = table_file.read_text()
    assert "`python -m benchmarks.gpu_check --rehearse --runs-dir" in report
    rows = [line.split(" | ") for line in report.splitlines() if line.count(" | ") == 9]
    by_case = {name: [row for row in rows if row[0] == f"| {name}"] for name in gpu_check.CASES}
    for name, case_rows in by_case.items():
        assert [row[1] for row in case_rows] == ["0", "1", "2"], name
        assert all(float(row[4].replace(",", "")) > 0 for row in case_rows)  # tokens/s
    megabytes = {name: float(case_rows[0][9].rstrip(" |")) for name, case_rows in by_case.items()}
    assert megabytes["LoRA, bf16"] < megabytes["full fine-tuning, bf16"] / 10
    for name in gpu_check.CASES:
        assert f"| fedtui, {name}: early stopping after round 5 |" in report
    assert processes_of(os.getpid()) == []
