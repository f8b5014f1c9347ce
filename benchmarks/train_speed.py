"""Training speed inside a fedtui run against the same training alone, in tokens per second.

    python -m benchmarks.train_speed llama-135m               # benchmarks.make_model's shape
    python -m benchmarks.train_speed /path/to/model           # a local pretrained folder
    python -m benchmarks.train_speed llama-135m --steps 24 --batch 4 --seq-len 128 --clients 1 2
    python -m benchmarks.train_speed llama-135m --repeat 1 --only standalone deployment

For each client count N (the cores shared out as a run shares them: with 1 client, every core;
with 2 on this 2-core machine, 1 thread each), the same local training (fedtui's partitions,
batches, seeds, AdamW and the config's proximal term) runs:

- standalone: `engine.ml.task.train` in a plain Python process, N processes side by side;
- trainer: Hugging Face's `Trainer` (what FlowerTune's clients use), same shapes (N = 1 only);
- deployment: a fedtui run (SuperLink, SuperNodes, warm workers), one round;
- simulation: the same run on Flower's simulation runtime, `client_cpus` = the threads.

Seconds are each client's training loop (the fedtui runs' `client_round_done` seconds, the
same clock `task.train` keeps), tokens the real tokens trained on; with N clients, the mean
over clients. Each figure is the median of `--repeat` tries, run interleaved (a small machine's
speed drifts by more than the gaps measured), and each ratio is the median tokens/s against the
standalone loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.make_model import SHAPES, make_model
from benchmarks.overhead import local_training
from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.config_files import load_config

WHERE = ("standalone", "trainer", "deployment", "simulation")


def overrides(args: argparse.Namespace, model: Path, clients: int) -> list[str]:
    threads = max(1, (os.cpu_count() or 1) // clients)
    return [
        f"model={model}",
        f"seq_len={args.seq_len}",
        f"train_batch_size={args.batch}",
        f"local_steps={args.steps}",
        "rounds=1",
        f"num_clients={clients}",
        f"threads_per_client={threads}",
        f"client_cpus={threads}",
        *args.overrides,
    ]


def alone(config: RunConfig, client: int, use_trainer: bool) -> dict[str, float]:
    """One client's local training in this process, after a go on stdin (side by side
    processes start their loops together); its seconds and tokens."""
    import torch

    from engine.ml import data, model as models

    torch.set_num_threads(config.threads_per_client)
    model = models.load_model(config)
    samples = data.load_client_samples(config, client)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    if use_trainer:
        return _with_trainer(config, model, samples)
    result = local_training(config, model, samples, client, 1, models.resolve_device(config))
    return {"seconds": result.seconds, "tokens": result.tokens}


def _with_trainer(config: RunConfig, model: Any, samples: Any) -> dict[str, float]:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from engine.ml import task

    rows = [{k: v[0] for k, v in batch.items()} for batch in task.batches(samples, 1)]
    counted = {"tokens": 0}

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        return {k: torch.stack([f[k] for f in features]) for k in features[0]}

    def count(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        # the batches the model sees: the Trainer collates some ahead that it never trains on
        counted["tokens"] += int(kwargs["attention_mask"].sum())

    model.register_forward_pre_hook(count, with_kwargs=True)

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            clock["begin"] = time.perf_counter()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            clock["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as output:
        arguments = TrainingArguments(
            output_dir=output,
            per_device_train_batch_size=config.train_batch_size,
            max_steps=config.local_steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type="constant",
            optim="adamw_torch",
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
            seed=config.seed,
        )
        Trainer(
            model=model,
            args=arguments,
            train_dataset=rows,
            data_collator=collate,
            callbacks=[Clock()],
        ).train()
    return {"seconds": clock["end"] - clock["begin"], "tokens": counted["tokens"]}


def side_by_side(settings: list[str], clients: int, use_trainer: bool) -> list[dict[str, float]]:
    """`clients` plain processes, each training its client, started together."""
    command = [sys.executable, "-m", "benchmarks.train_speed", "--alone"]
    processes = [
        subprocess.Popen(
            [*command, str(client), "--settings", json.dumps(settings)]
            + (["--trainer"] if use_trainer else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for client in range(clients)
    ]
    for process in processes:
        assert process.stdout is not None
        json.loads(process.stdout.readline())  # ready
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"a standalone loop failed (exit {process.returncode})")
        results.append(json.loads(output.splitlines()[-1]))
    return results


def in_fedtui(settings: list[str], backend: str) -> list[dict[str, float]]:
    """One round of a headless fedtui run; each client's training seconds and tokens. The run's
    folder (its checkpoints: 1.6 GB at 135M) is removed, unless the run failed."""
    from engine.run.controller import RunController

    config = load_config(None, [*settings, f"backend={backend}"])
    runs = Path(tempfile.mkdtemp(prefix="fedtui-train-speed-run-"))
    controller = RunController(config, runs).start()
    if controller.wait() != "completed":
        raise SystemExit(f"the fedtui run did not complete (see {controller.run_dir})")
    trained = [
        {"seconds": e["seconds"], "tokens": e["tokens"]}
        for e in ev.read_events(controller.run_dir / "events.jsonl")
        if e["type"] == ev.CLIENT_ROUND_DONE
    ]
    shutil.rmtree(runs)
    return trained


def measure(where: str, settings: list[str], clients: int) -> list[dict[str, float]]:
    if where in ("standalone", "trainer"):
        return side_by_side(settings, clients, use_trainer=where == "trainer")
    return in_fedtui(settings, where)


def model_folder(model: str) -> Path:
    if model not in SHAPES:
        return Path(model)
    folder = Path(tempfile.gettempdir()) / f"fedtui-train-speed-{model}"
    if not (folder / "config.json").exists():
        count = make_model(model, folder)
        print(f"built {model} ({count:,} parameters) in {folder}", flush=True)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a local model folder or a make_model shape")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="+", choices=WHERE, default=list(WHERE))
    parser.add_argument("--repeat", type=int, default=3, help="tries of each, interleaved")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--alone", type=int, metavar="CLIENT", help=argparse.SUPPRESS)
    parser.add_argument("--trainer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone is not None:
        config = load_config(None, json.loads(args.settings))
        print(json.dumps(alone(config, args.alone, args.trainer)))
        return 0
    if args.model is None:
        parser.error("name a model folder or one of " + ", ".join(sorted(SHAPES)))

    from engine.ml import data

    model = model_folder(args.model)
    print(f"{model}: {args.steps} steps of {args.batch} x {args.seq_len} tokens per client")
    table = []
    for clients in args.clients:
        settings = overrides(args, model, clients)
        data.prepare(load_config(None, settings))
        wheres = [w for w in args.only if not (w == "trainer" and clients > 1)]
        speeds: dict[str, list[tuple[float, float]]] = {where: [] for where in wheres}
        for repeat in range(args.repeat):  # interleaved: a slow spell of the machine hits all
            for where in wheres:
                results = measure(where, settings, clients)
                seconds = statistics.mean(r["seconds"] for r in results)
                speed = statistics.mean(r["tokens"] / r["seconds"] for r in results)
                speeds[where].append((seconds, speed))
                print(f"  {clients} clients, {where}, try {repeat + 1}: {speed:.1f} tokens/s")
        baseline = statistics.median(s for _, s in speeds.get("standalone", [(0, 0)]))
        for where, tries in speeds.items():
            seconds, speed = (statistics.median(column) for column in zip(*tries))
            ratio = f"{speed / baseline:6.3f}" if baseline else f"{'-':>6}"
            low, high = min(s for _, s in tries), max(s for _, s in tries)
            table.append(
                f"{clients:>7}  {where:<10} {seconds:>8.1f} {speed:>9.1f} {ratio} "
                f"{low:>7.1f}-{high:.1f}"
            )
    print(f"medians of {args.repeat} tries each; ratio: tokens/s against the standalone loop's")
    print(f"{'clients':>7}  {'where':<10} {'seconds':>8} {'tokens/s':>9} {'ratio':>6}   range")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
