"""Wall time of a real run and Flower's fixed per-round overhead.

    python benchmarks/round_overhead.py                      # the default run
    python benchmarks/round_overhead.py --set rounds=3       # any config, as `fedtui run`
    python benchmarks/round_overhead.py --analyse runs/<id>  # a run already recorded
    python benchmarks/round_overhead.py --superexec-poll 0.1 # FLWR_SUPEREXEC_TASK_POLL_INTERVAL
    python benchmarks/round_overhead.py --set warm_workers=false  # Flower's process per message

Per round: wall = round start to the end of its central evaluation; compute = the slowest
client's local training; overhead = wall - compute - eval. The overhead is then split using the
process and progress events: until the ClientApp process exists (SuperNode poll + SuperExec
launch), until its first training step (imports, model and data load), and from its last step to
the server holding its reply (serialization, upload, server pull). Process starts are seen by a
0.25 s scan, so the split is good to about +-0.25 s. In Flower's simulation runtime
(`--set backend=simulation`) no process starts per message: "to 1st step" counts from the
round's start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from engine.core import events as ev
from engine.core.config_files import load_config
from engine.run.controller import RunController


def analyse(events: list[dict]) -> None:
    started = {e["round"]: e["t"] for e in events if e["type"] == ev.ROUND_STARTED}
    done = {e["round"]: e for e in events if e["type"] == ev.ROUND_DONE}
    finished = next(e for e in events if e["type"] == ev.RUN_FINISHED)
    print(
        f"status {finished['status']}, total wall time {finished['seconds']:.1f} s, "
        f"eval loss round 0 {done[0]['eval_loss']:.4f} -> round {max(done)} "
        f"{done[max(done)]['eval_loss']:.4f} "
        f"({100 * (1 - done[max(done)]['eval_loss'] / done[0]['eval_loss']):.1f}% lower)"
    )
    print(
        f"{'round':>5} {'wall':>6} {'compute':>8} {'eval':>5} {'overhead':>9} | "
        f"{'to process':>10} {'to 1st step':>11} {'reply':>6}"
    )
    overheads = []
    for number in sorted(started):
        if number not in done:
            continue
        clients = [e for e in events if e["type"] == ev.CLIENT_ROUND_DONE and e["round"] == number]
        compute = max(e["seconds"] for e in clients)
        wall, eval_s = done[number]["seconds"], done[number]["eval_seconds"]
        overhead = wall - compute - eval_s
        overheads.append(overhead)
        to_process, to_step, reply = _split(events, number, started[number], clients)
        print(
            f"{number:>5} {wall:>6.1f} {compute:>8.1f} {eval_s:>5.1f} {overhead:>9.1f} | "
            f"{to_process:>10.1f} {to_step:>11.1f} {reply:>6.1f}"
        )
    print(
        f"overhead per round: median {statistics.median(overheads):.1f} s, "
        f"min {min(overheads):.1f} s, max {max(overheads):.1f} s "
        f"(split columns: mean over clients)"
    )
    _print_peak_rss(events)


def _print_peak_rss(events: list[dict]) -> None:
    """The ClientApp's peak RSS (the kernel's high-water mark) as each round ends: with warm
    workers, one process's over the whole run, so growth would be a leak."""
    peaks: dict[int, dict[int, int]] = {}
    for e in events:
        if e["type"] == ev.CLIENT_ROUND_DONE and e.get("peak_rss_bytes") is not None:
            peaks.setdefault(e["client"], {})[e["round"]] = e["peak_rss_bytes"]
    for client, by_round in sorted(peaks.items()):
        first, last = min(by_round), max(by_round)
        growth = by_round[last] / by_round[first] - 1
        print(
            f"client {client} ClientApp peak RSS: round {first} {by_round[first] / 2**20:.0f} MiB"
            f" -> round {last} {by_round[last] / 2**20:.0f} MiB ({growth:+.1%})"
        )


def _split(events, number, round_start, clients) -> tuple[float, float, float]:
    to_process, to_step, reply = [], [], []
    for done in clients:
        client = done["client"]
        spawned = [
            e["t"]
            for e in events
            if e["type"] == ev.PROCESS_STARTED
            and e["role"] == "clientapp"
            and e.get("client") == client
            and round_start <= e["t"] <= done["t"]
        ]
        steps = [
            e
            for e in events
            if e["type"] == ev.CLIENT_PROGRESS and e["round"] == number and e["client"] == client
        ]
        if not steps:
            continue
        if spawned:
            to_process.append(spawned[0] - round_start)
        # in the simulation runtime no process starts: from the round's start
        to_step.append(steps[0]["t"] - (spawned[0] if spawned else round_start))
        reply.append(done["t"] - steps[-1]["t"])
    return _mean(to_process), _mean(to_step), _mean(reply)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--analyse", metavar="RUN", help="analyse a recorded run folder")
    parser.add_argument(
        "--superexec-poll",
        type=float,
        metavar="SECONDS",
        help="set FLWR_SUPEREXEC_TASK_POLL_INTERVAL for Flower's processes",
    )
    args = parser.parse_args()
    if args.analyse:
        analyse(ev.read_events(Path(args.analyse) / "events.jsonl"))
        return 0
    if args.superexec_poll is not None:
        os.environ["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = str(args.superexec_poll)
    config = load_config(args.config, args.overrides)
    runs_dir = Path(tempfile.mkdtemp(prefix="fedtui-bench-"))
    started = time.monotonic()
    controller = RunController(config, runs_dir).start()
    status = controller.wait()
    print(
        f"{config.describe_strategy()}, {config.num_clients} clients, {config.rounds} rounds: "
        f"{status} in {time.monotonic() - started:.1f} s ({controller.run_dir})"
    )
    analyse(ev.read_events(controller.run_dir / "events.jsonl"))
    return 0 if status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
