"""The seed report's setup on one GPU: what fedtui measures there, beside nvidia-smi and torch.

    python -m benchmarks.gpu_check              # about 6 minutes on one GPU
    python -m benchmarks.gpu_check --quick      # about 3 minutes: fewer samples per client
    python -m benchmarks.gpu_check --dry-run    # check the arguments and the configs, run nothing
    python -m benchmarks.gpu_check --rehearse   # every step on the CPU with the embedded model

OPT-350M's exact shape (benchmarks.make_model, random init) on the embedded code corpus, with
the seed preset's hyperparameters (3 clients, batch 2/4, lr 1e-5, FedProx mu 0.1, seq_len 512),
one round of one local epoch, all three clients on GPU 0:
  1. full fine-tuning in bf16, deployment backend (`client_gpus = [0, 0, 0]`);
  2. LoRA in bf16, deployment backend;
  3. LoRA in bf16, Flower's simulation runtime (`client_gpu_fraction = 0.33`).
For each: round time, training tokens/s per client, peak VRAM per client as fedtui recorded it
(NVML), as nvidia-smi listed those PIDs at the same moment, and torch's max_memory_reserved;
whether each PID fedtui attributed is one nvidia-smi lists; bytes per round. Then the estimated
wall time of the seed's whole experiment, and a markdown table for BENCHMARKS.md. Each case that
fails is reported as such and the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.gpu_figures import CaseFigures, SmiSample, figures, markdown
from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.core.errors import FedtuiError

PRESET = "opt350m-codeparrot-fedprox"
SAMPLES = {"full": 480, "quick": 96, "rehearse": 8}
CASE_CEILING_S = 300.0  # a case still running then is aborted, and reported
SMI_EVERY_S = 0.5
COMMON = [
    "dataset=embedded:stdlib-code",
    "rounds=1",
    "local_epochs=1",
    "device=cuda",
    "precision=bf16",
    "early_stopping.enabled=false",
    "keep_checkpoints=best-last",
    "generation_prompts=[]",
]
CASES = {
    "full fine-tuning, bf16": ["lora.enabled=false", "client_gpus=[0, 0, 0]"],
    "LoRA, bf16": ["lora.enabled=true", "client_gpus=[0, 0, 0]"],
    "LoRA, bf16, simulation": [
        "lora.enabled=true",
        "backend=simulation",
        "client_gpu_fraction=0.33",
    ],
}
# The whole check on the CPU: the embedded model, a few short samples, no GPU settings.
REHEARSAL = [
    "model=embedded:tiny-opt",
    "device=cpu",
    "seq_len=64",
    "eval_samples=8",
    "client_gpus=[]",
    "client_gpu_fraction=0.0",
]


def configs(model: str, samples: int, rehearse: bool) -> dict[str, RunConfig]:
    """Each case's config, checked as `fedtui run --set` checks it (ConfigError if bad)."""
    last = REHEARSAL if rehearse else [f"model={model}"]
    return {
        name: load_config(PRESET, [*COMMON, f"samples_per_client={samples}", *case, *last])
        for name, case in CASES.items()
    }


class NvidiaSmi(threading.Thread):
    """`nvidia-smi --query-compute-apps` every SMI_EVERY_S, timestamped as fedtui's events are."""

    def __init__(self) -> None:
        super().__init__(name="nvidia-smi", daemon=True)
        self.samples: list[SmiSample] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(SMI_EVERY_S):
            used = compute_apps()
            if used is not None:
                self.samples.append(SmiSample(time.time(), used))

    def stop(self) -> list[SmiSample]:
        self._stopping.set()
        self.join()
        return self.samples


def compute_apps() -> dict[int, int] | None:
    """PID -> bytes of every process on a GPU, as nvidia-smi lists them (None if it fails)."""
    try:
        listed = subprocess.run(
            [
                "nvidia-smi",
                "--query-compute-apps=pid,used_memory",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = {}
    for line in listed.splitlines():
        pid, _, mib = (part.strip() for part in line.partition(","))
        if pid.isdigit() and mib.isdigit():
            used[int(pid)] = int(mib) * 2**20
    return used


def run_case(name: str, config: RunConfig, runs_dir: Path) -> CaseFigures:
    from engine.run.controller import RunController

    smi = NvidiaSmi()
    if shutil.which("nvidia-smi"):
        smi.start()
    started = time.monotonic()
    controller = RunController(config, runs_dir)
    try:
        controller.start()
        if controller.wait(CASE_CEILING_S) is None:
            controller.abort()
            controller.wait()
    except FedtuiError as error:
        return CaseFigures(name, "refused", None, None, None, None, [], None, str(error))
    finally:
        samples = smi.stop() if smi.is_alive() else []
    print(f"  {controller.status} in {time.monotonic() - started:.0f} s ({controller.run_dir})")
    return figures(name, ev.read_events(controller.run_dir / "events.jsonl"), samples)


def describe_machine() -> str:
    import torch

    gpu = "no CUDA device"
    if torch.cuda.is_available():
        memory = torch.cuda.get_device_properties(0).total_memory
        gpu = f"{torch.cuda.get_device_name(0)} ({memory / 2**30:.0f} GiB)"
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = ""
    return (
        f"{datetime.date.today()}, {gpu}, driver {driver or 'n/a'}, torch {torch.__version__} "
        f"(CUDA {torch.version.cuda or 'none'})"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"{SAMPLES['quick']} samples/client")
    mode.add_argument("--dry-run", action="store_true", help="check the configs, run nothing")
    mode.add_argument("--rehearse", action="store_true", help="every step on the CPU, tiny")
    parser.add_argument("--samples", type=int, help="samples per client (each trains 1 epoch)")
    parser.add_argument("--model-dir", type=Path, help="an opt-350m folder already made")
    parser.add_argument("--runs-dir", type=Path, help="where the runs go (default: a temp folder)")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    mode = "quick" if args.quick else "rehearse" if args.rehearse else "full"
    samples = SAMPLES[mode] if args.samples is None else args.samples
    model_dir = args.model_dir or Path(tempfile.gettempdir()) / "fedtui-gpu-check-opt-350m"
    try:
        cases = configs(str(model_dir), samples, args.rehearse)
    except FedtuiError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for name, config in cases.items():
            print(
                f"{name}: {config.model}, {config.describe_strategy()}, {config.backend}, "
                f"lora {config.lora.enabled}, {config.precision} on {config.device}, "
                f"{config.num_clients} clients x {samples} samples x seq_len {config.seq_len}"
            )
        return 0
    if not args.rehearse and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device here; nothing measured (run it on a GPU)")
        return 0
    if not args.rehearse and not (model_dir / "config.json").exists():
        from benchmarks.make_model import make_model

        print(f"building opt-350m's shape in {model_dir} ...")
        make_model("opt-350m", model_dir)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="fedtui-gpu-check-"))
    machine = describe_machine()
    print(machine)
    results = []
    for number, (name, config) in enumerate(cases.items(), 1):
        print(f"case {number}/{len(cases)}: {name}")
        results.append(run_case(name, config, runs_dir))
    table = markdown(results, samples)
    command = shlex.join(["python", "-m", "benchmarks.gpu_check", *(argv or sys.argv[1:])])
    report = f"{machine}\n`{command}`, {samples} samples per client\n\n{table}\n"
    print("\n" + report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    return 0 if all(r.status == "completed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
