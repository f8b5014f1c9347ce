"""Peak memory of a real run at a realistic size, against a plain PyTorch loop.

    python -m benchmarks.make_model llama-135m /tmp/llama-135m
    python -m benchmarks.memory /tmp/llama-135m                # full fine-tuning and LoRA
    python -m benchmarks.memory /tmp/llama-135m --modes lora --clients 2
    python -m benchmarks.memory /tmp/llama-135m --set shared_memory_weights=false  # any key

For each mode (full fine-tuning, LoRA) fedtui runs one real round (SuperLink, SuperNodes,
ServerApp, ClientApps) with 2 and with 4 clients, aggregating replies as they arrive
(fedtui's default) and with Flower's own `aggregate_train` (every reply held at once). Peaks
are the kernel's high-water marks (VmHWM, polled every 0.1 s; a ClientApp also reports its own
`ru_maxrss`). A client's peak is the sum of its processes' peaks (SuperNode, SuperExec,
ClientApp): an upper bound of the client's peak at any one moment. The plain loop is one
process loading the same model and partition and doing the same AdamW steps (FedAvg: no
proximal term on either side).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.config_files import load_config
from engine.flower.home import MALLOC_MMAP_THRESHOLD
from engine.run.controller import RunController

GIB = 1024**3
WORKLOAD = [
    "samples_per_client=16",
    "seq_len=128",
    "train_batch_size=4",
    "eval_samples=16",
    "eval_batch_size=4",
    "rounds=1",
    "strategy=fedavg",
]
TRAINERS = ("clientapp", "worker")  # a warm worker trains; its ClientApp is then a relay
MODES = {"full": [], "full-fp16": ["transfer_dtype=fp16"], "lora": ["lora.enabled=true"]}


class PeakWatcher:
    """Every process of a run by role and client, and the highest VmHWM seen for each."""

    def __init__(self) -> None:
        self.owner: dict[int, tuple[str, int | None]] = {}
        self.peak: dict[int, int] = defaultdict(int)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def on_event(self, event: ev.Event) -> None:
        if event["type"] == ev.PROCESS_STARTED:
            self.owner[event["pid"]] = (event["role"], event.get("client"))
        elif event["type"] == ev.CLIENT_ROUND_DONE and event.get("peak_rss_bytes"):
            trainers = [  # the process that trained: the warm worker, else the ClientApp
                pid
                for pid, (role, client) in self.owner.items()
                if role in TRAINERS and client == event["client"]
            ]
            if trainers:  # its own ru_maxrss, measured after its reply was built
                pid = max(trainers, key=lambda p: TRAINERS.index(self.owner[p][0]))
                self.peak[pid] = max(self.peak[pid], event["peak_rss_bytes"])

    def start(self) -> PeakWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._done.wait(0.1):
            for pid in list(self.owner):
                high_water = _vm_hwm(pid)
                if high_water:
                    self.peak[pid] = max(self.peak[pid], high_water)

    def by_role(self, role: str, client: int | None = None) -> int:
        """The highest peak among `role`'s processes (of `client`)."""
        return max(
            (self.peak[pid] for pid, owner in self.owner.items() if owner == (role, client)),
            default=0,
        )

    def client_peak(self, client: int) -> int:
        return sum(self.by_role(role, client) for role in ("supernode", "superexec", *TRAINERS))


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure_run(
    model: str, mode: str, clients: int, aggregation: str, overrides: list[str]
) -> dict:
    config = load_config(
        None,
        [
            f"model={model}",
            f"num_clients={clients}",
            f"aggregation={aggregation}",
            *WORKLOAD,
            *MODES[mode],
            *overrides,
        ],
    )
    watcher = PeakWatcher().start()
    controller = RunController(config, tempfile.mkdtemp(prefix="fedtui-memory-"))
    controller.subscribe(watcher.on_event)
    controller.start()
    status = controller.wait()
    watcher.stop()
    done = [
        e
        for e in ev.read_events(controller.run_dir / "events.jsonl")
        if e["type"] == ev.ROUND_DONE and e["round"] == 1
    ]
    return {
        "status": status,
        "serverapp": watcher.by_role("serverapp"),
        "superlink": watcher.by_role("superlink"),
        "client": max(watcher.client_peak(k) for k in range(clients)),
        "clientapp": max(max(watcher.by_role(r, k) for r in TRAINERS) for k in range(clients)),
        "bytes_received": done[0]["bytes_received"] if done else None,
    }


def plain_loop(model: str, mode: str, malloc_threshold: bool = False) -> int:
    """Peak RSS of the same training as one client, as a plain PyTorch loop in a fresh process
    (with glibc's default allocator settings, or with the fixed mmap threshold fedtui gives
    Flower's processes)."""
    env = dict(os.environ)
    if malloc_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(MALLOC_MMAP_THRESHOLD)
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", model, "--plain-loop", mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])["peak"]


def _plain_loop_in_this_process(model_path: str, mode: str) -> None:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from engine.ml import data

    config = load_config(None, [f"model={model_path}", *WORKLOAD, *MODES[mode]])
    torch.set_num_threads(1)  # as a client of two on this machine
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora.r,
                lora_alpha=config.lora.alpha,
                lora_dropout=config.lora.dropout,
                task_type="CAUSAL_LM",
            ),
        )
    samples = data.load_client_samples(config, 0)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
    )
    model.train()
    for start in range(0, len(samples), config.train_batch_size):
        ids = torch.from_numpy(
            samples.ids[start : start + config.train_batch_size].astype(np.int64)
        )
        mask = torch.from_numpy(
            samples.mask[start : start + config.train_batch_size].astype(np.int64)
        )
        loss = model(
            input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a save_pretrained folder (benchmarks.make_model)")
    parser.add_argument("--modes", default="full,full-fp16,lora")
    parser.add_argument("--clients", default="2,4")
    parser.add_argument("--aggregations", default="streaming,flower")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--plain-loop", metavar="MODE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        _plain_loop_in_this_process(args.model, args.plain_loop)
        return 0
    from transformers import AutoConfig

    from engine.ml import data

    data.prepare(load_config(None, [f"model={args.model}", *WORKLOAD]))
    architecture = AutoConfig.from_pretrained(args.model)
    size = _fp32_bytes(args.model)
    print(
        f"model {args.model} ({architecture.model_type}): {size / 1e9:.2f} GB of fp32 weights; "
        f"workload: {' '.join(WORKLOAD)}"
    )
    for mode in args.modes.split(","):
        plain = plain_loop(args.model, mode)
        tuned = plain_loop(args.model, mode, malloc_threshold=True)
        print(
            f"\n[{mode}] plain PyTorch loop peak RSS {plain / GIB:.2f} GiB "
            f"({tuned / GIB:.2f} GiB with fedtui's malloc threshold)"
        )
        print(
            f"{'clients':>7} {'aggregation':>11} | {'ServerApp':>9} {'x model':>7} | "
            f"{'client':>6} {'vs loop':>7} {'ClientApp':>9} | {'SuperLink':>9} "
            f"{'bytes in/round':>14}"
        )
        for clients in map(int, args.clients.split(",")):
            for aggregation in args.aggregations.split(","):
                row = measure_run(args.model, mode, clients, aggregation, args.overrides)
                print(
                    f"{clients:>7} {aggregation:>11} | {row['serverapp'] / GIB:>7.2f} Gi "
                    f"{row['serverapp'] / size:>6.2f}x | {row['client'] / GIB:>4.2f} Gi "
                    f"{row['client'] / plain:>6.2f}x {row['clientapp'] / GIB:>7.2f} Gi | "
                    f"{row['superlink'] / GIB:>7.2f} Gi {row['bytes_received'] or 0:>14,}"
                    f"{'' if row['status'] == 'completed' else '  ' + row['status']}",
                    flush=True,
                )
    return 0


def _fp32_bytes(model: str) -> int:
    from engine.ml.model import load_base_model

    return sum(p.numel() for p in load_base_model(RunConfig(model=model)).parameters()) * 4


if __name__ == "__main__":
    sys.exit(main())
