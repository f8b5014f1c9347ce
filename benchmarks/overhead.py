"""fedtui against a plain single-process PyTorch loop doing the same training: the wall-time ratio.

    python -m benchmarks.overhead                        # the "long rounds" config below
    python -m benchmarks.overhead --set rounds=2 ...     # any config, as `fedtui run`

The plain loop is what one would write without Flower: one process, the same partitions,
batches, seeds, steps and FedProx proximal term (engine.ml.task.train), each client's model
kept across rounds and loaded with the global weights, the example-weighted mean, central
evaluation every round (round 0 included). It trains the clients one after the other with all
the cores; fedtui trains them side by side with its share each. It prints both wall times (from
start to the last evaluation, process start-up and data preparation included), their ratio,
and the eval losses of both, which agree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.ml import data, model as models, task
from engine.ml.samples import Samples
from engine.run.controller import RunController

# Each client trains about 60 s per round on this 2-core machine (1 thread each).
LONG_ROUNDS = ["rounds=3", "local_epochs=24"]


def local_training(
    config: RunConfig,
    model: torch.nn.Module,
    samples: Samples,
    client: int,
    server_round: int,
    device: torch.device,
    precision: task.Precision | None = None,
) -> task.TrainResult:
    """`client`'s local training in `server_round` as a run of `config` trains it."""
    return task.train(
        model,
        samples,
        epochs=config.local_epochs,
        local_steps=config.local_steps,
        batch_size=config.train_batch_size,
        learning_rate=config.learning_rate,
        mu=config.proximal_mu if config.strategy == "fedprox" else 0.0,
        device=device,
        seed=task.local_seed(config.seed, client, server_round),
        grad_accum_steps=config.grad_accum_steps,
        precision=precision or task.Precision(),
    )


def plain_loop(config: RunConfig) -> tuple[float, list[float]]:
    """Wall seconds and the eval loss of every round, training as fedtui's apps do."""
    started = time.monotonic()
    torch.set_num_threads(os.cpu_count() or 1)
    device = models.resolve_device(config)
    precision = task.Precision(
        models.resolve_precision(config, device), config.gradient_checkpointing
    )
    global_model = models.load_model(config).to(device)
    global_weights = models.trainable_weights(global_model)
    eval_samples = data.load_eval_samples(config)
    clients = [
        (models.load_model(config), data.load_client_samples(config, client))
        for client in range(config.num_clients)
    ]

    def evaluate() -> float:
        return task.evaluate(
            global_model,
            eval_samples,
            batch_size=config.eval_batch_size,
            device=device,
            precision=precision.compute,
        )

    losses = [evaluate()]
    for server_round in range(1, config.rounds + 1):
        sums = {name: torch.zeros_like(tensor) for name, tensor in global_weights.items()}
        total = 0
        for client, (model, samples) in enumerate(clients):
            models.load_weights(model, {n: t.detach() for n, t in global_weights.items()})
            result = local_training(config, model, samples, client, server_round, device, precision)
            with torch.no_grad():
                for name, tensor in models.trainable_weights(model).items():
                    sums[name].add_(tensor.detach().to(device), alpha=result.examples)
            total += result.examples
        with torch.no_grad():
            for name, tensor in global_weights.items():
                tensor.copy_(sums[name] / total)
        losses.append(evaluate())
    return time.monotonic() - started, losses


def fedtui_run(config: RunConfig) -> tuple[float, list[float]]:
    started = time.monotonic()
    controller = RunController(config, Path(tempfile.mkdtemp(prefix="fedtui-bench-"))).start()
    if controller.wait() != "completed":
        raise SystemExit(f"the fedtui run did not complete (see {controller.run_dir})")
    events = ev.read_events(controller.run_dir / "events.jsonl")
    done = sorted((e["round"], e["eval_loss"]) for e in events if e["type"] == ev.ROUND_DONE)
    last_eval = max(e["t"] for e in events if e["type"] == ev.ROUND_DONE)
    first = next(e["t"] for e in events if e["type"] == ev.RUN_STARTED)
    print(f"fedtui run folder: {controller.run_dir} ({time.monotonic() - started:.1f} s in all)")
    return last_eval - first, [loss for _, loss in done]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    config = load_config(args.config, [*LONG_ROUNDS, *args.overrides])
    if config.strategy not in ("fedprox", "fedavg"):
        parser.error("the plain loop implements fedprox and fedavg")
    data.prepare(config)  # tokenized once, cached, before either is timed
    fedtui_s, fedtui_losses = fedtui_run(config)
    plain_s, plain_losses = plain_loop(config)
    print(f"{config.describe_strategy()}, {config.num_clients} clients, {config.rounds} rounds")
    print("round  eval loss fedtui  eval loss plain loop")
    for number, (ours, plain) in enumerate(zip(fedtui_losses, plain_losses)):
        print(f"{number:>5}  {ours:>16.4f}  {plain:>20.4f}")
    print(f"wall time: fedtui {fedtui_s:.1f} s, plain loop {plain_s:.1f} s")
    print(f"ratio fedtui / plain loop: {fedtui_s / plain_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
