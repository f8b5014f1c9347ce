"""fedtui's processes import fedtui, whatever folder it is run from: `python -m` puts the working
folder first on the path, and `engine/` or `tui/` is a common folder name in ML projects."""

import subprocess
import sys
from pathlib import Path

import pytest

from engine.record import run_lock
from engine.record.run_folders import read_run
from tests.e2e.test_detached import settings, the_run
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

# The console script: like every console script, it puts its own folder on the path, not the
# working folder; the processes it starts must not either.
FEDTUI = str(Path(sys.executable).parent / "fedtui")
DECOY = "raise ImportError('a package of the working folder was imported instead of fedtui')\n"


def test_a_run_started_from_a_folder_holding_engine_and_tui_packages_completes(tmp_path):
    for package in ("engine", "tui"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(DECOY)

    launched = subprocess.run(
        [FEDTUI, "run", "--headless", "--detach", *settings(1), "--set", "num_clients=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert launched.returncode == 0, launched.stdout + launched.stderr
    run_dir = the_run(tmp_path)  # its controller, `python -m tui.detached`, is running
    wait_for(lambda: run_lock.live_controller(run_dir) is None, timeout=600)
    assert read_run(run_dir).state.status == "completed"
