"""Record the sample runs again with the current fedtui, on the offline default setup.

    python sample_runs/regenerate.py                    # all of them, about half an hour on 2 cores
    python sample_runs/regenerate.py fedavg fedprox-mu-sweep   # some of them

The seed report's story, told with real runs: the same tiny-OPT + stdlib-code setup, made
small and non-IID (each client holds whole, different stdlib packages) with several local
epochs so that, as in the report, central eval loss bottoms out and then rises. FedProx at three
values of mu (the sweep the report recommends, made by `fedtui sweep`'s engine), FedAvg and
FedAvgM (the report's earlier strategy), and a Dirichlet pair: the same FedProx run over four
clients whose sources are drawn with alpha 0.1 (each client dominated by a few packages) and
alpha 10 (nearly IID); and four strategies on the alpha 0.1 split: FedAvg, FedProx, SCAFFOLD
and FedAdam, the comparison OpenFedLLM makes. Checkpoints are dropped: the runs replay and
compare without the weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.record.run_lock import LOCK_FILE
from engine.run.controller import RunController
from engine.run.sweep import Sweep, parse_grid, plan_members

HERE = Path(__file__).parent
SHARED = [
    "partition=by-source",
    "samples_per_client=128",
    "local_epochs=4",
    "learning_rate=3e-3",
    "rounds=8",
]
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
RECORDED = {
    "fedavg": ["strategy=fedavg"],
    "fedavgm": ["strategy=fedavgm", "server_momentum=0.9"],
}
# name: (--set items on top of SHARED, --grid items)
SWEEPS = {
    "fedprox-mu-sweep": (["strategy=fedprox"], ["proximal_mu=0.01,0.1,1.0"]),
    "dirichlet-alpha-sweep": (
        [
            "strategy=fedprox",
            "proximal_mu=0.1",
            "partition=dirichlet",
            "num_clients=4",
            "samples_per_client=64",
        ],
        ["dirichlet_alpha=0.1,10"],
    ),
    # FedAdam's eta: Flower's default (0.1) moves every weight ~0.1 a round, far past this
    # model's weights; 0.01 is FedYogi's default.
    "strategy-sweep": (
        [
            "proximal_mu=0.1",
            "eta=0.01",
            "partition=dirichlet",
            "dirichlet_alpha=0.1",
            "num_clients=4",
            "samples_per_client=64",
        ],
        ["strategy=fedavg,fedprox,scaffold,fedadam"],
    ),
}


def config_of(name: str, extra: list[str] = ()) -> RunConfig:
    return load_config("default", [*SHARED, *RECORDED[name], f"name={name}", *extra])


def member_config(sweep: str, member: str, extra: list[str] = ()) -> RunConfig:
    """The config of one member of a recorded sweep (`proximal_mu=0.1`), as the sweep ran it."""
    overrides, grid = SWEEPS[sweep]
    members = plan_members("default", [*SHARED, *overrides, *extra], parse_grid(grid))
    (config,) = [m.config for m in members if m.name == member]
    return config


@contextlib.contextmanager
def pinned_kernels() -> Iterator[None]:
    """torch's CPU kernels (and MKL's) as on an AVX2 machine, for every process of the run
    (they inherit the environment): AVX-512 kernels round differently, and the recorded runs
    replay the same numbers on either kind of CPU only with one of them chosen."""
    saved = {key: os.environ.get(key) for key in PINNED_KERNELS}
    os.environ.update(PINNED_KERNELS)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def record(config: RunConfig, runs_dir: Path, run_id: str) -> Path:
    """Run `config` for real into `runs_dir/run_id` (replacing it) and return the folder."""
    shutil.rmtree(runs_dir / run_id, ignore_errors=True)
    with pinned_kernels():
        controller = RunController(config, runs_dir, run_id=run_id).start()
        status = controller.wait()
    _drop_run_only_files(controller.run_dir)
    print(f"{run_id}: {status} ({controller.run_dir})", flush=True)
    return controller.run_dir


def record_sweep(name: str, runs_dir: Path) -> Path:
    """Run the sweep `name` for real into `runs_dir/name` (replacing it), members one after
    another, and return its folder."""
    shutil.rmtree(runs_dir / name, ignore_errors=True)
    overrides, grid = SWEEPS[name]
    with pinned_kernels():
        sweep = Sweep.plan("default", [*SHARED, *overrides], grid, runs_dir, sweep_id=name)
        status = sweep.start().wait()
    for member in sweep.members:
        _drop_run_only_files(sweep.sweep_dir / member.name)
    print(f"{name}: {status} ({sweep.sweep_dir})", flush=True)
    return sweep.sweep_dir


def _drop_run_only_files(run_dir: Path) -> None:
    """What a replay does not read: the checkpoints, the finished controller's lock file."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    (run_dir / LOCK_FILE).unlink(missing_ok=True)


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(RECORDED) - set(SWEEPS))
    if unknown:
        known = ", ".join([*RECORDED, *SWEEPS])
        print(f"unknown sample run(s): {', '.join(unknown)}; known: {known}", file=sys.stderr)
        return 2
    for name in names or [*RECORDED, *SWEEPS]:
        if name in SWEEPS:
            record_sweep(name, HERE)
        else:
            record(config_of(name), HERE, name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
