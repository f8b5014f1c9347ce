"""Record the sample runs again with the current fedtui, on the offline default setup.

    python sample_runs/regenerate.py                 # all of them, about 15 minutes on 2 cores
    python sample_runs/regenerate.py fedavg          # some of them

The seed report's story, told with real runs: the same tiny-OPT + stdlib-code setup, made
small and non-IID (each client holds whole, different stdlib packages) with several local
epochs so that, as in the report, central eval loss bottoms out and then rises. FedProx at three
values of mu (the report recommends comparing them), FedAvg and FedAvgM (the report's earlier
strategy). Checkpoints are dropped: the runs replay and compare without the weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from engine.config import RunConfig, load_config
from engine.controller import RunController

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
    "fedprox-mu0.1": ["strategy=fedprox", "proximal_mu=0.1"],
    "fedprox-mu0.01": ["strategy=fedprox", "proximal_mu=0.01"],
    "fedprox-mu1.0": ["strategy=fedprox", "proximal_mu=1.0"],
    "fedavg": ["strategy=fedavg"],
    "fedavgm": ["strategy=fedavgm", "server_momentum=0.9"],
}


def config_of(name: str, extra: list[str] = ()) -> RunConfig:
    return load_config("default", [*SHARED, *RECORDED[name], f"name={name}", *extra])


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


def record(name: str, runs_dir: Path, extra: list[str] = ()) -> Path:
    """Run `name` for real into `runs_dir/name` (replacing it) and return the folder."""
    shutil.rmtree(runs_dir / name, ignore_errors=True)
    with pinned_kernels():
        controller = RunController(config_of(name, extra), runs_dir, run_id=name).start()
        status = controller.wait()
    shutil.rmtree(controller.run_dir / "checkpoints", ignore_errors=True)
    print(f"{name}: {status} ({controller.run_dir})", flush=True)
    return controller.run_dir


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(RECORDED))
    if unknown:
        print(
            f"unknown sample run(s): {', '.join(unknown)}; known: {', '.join(RECORDED)}",
            file=sys.stderr,
        )
        return 2
    for name in names or RECORDED:
        record(name, HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
