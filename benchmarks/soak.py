"""Memory over a long run: a 50-round soak of the default config, watched by the TUI.

    python -m benchmarks.soak                       # 50 rounds of the default config
    python -m benchmarks.soak --rounds 4            # a quick check of the benchmark itself
    python -m benchmarks.soak --set warm_workers=false   # any config, as `fedtui run`

A real run (SuperLink, SuperNodes, ServerApp, warm workers) is driven by `RunController` in this
process with the real monitor attached headlessly (Textual's `run_test`, 120x40), so every
event is folded and drawn as in `fedtui run`. Each time a round's central evaluation reaches the
monitor, this process's RSS (controller + TUI) is sampled, and so is each long-lived Flower
process's (known by the run's own `process_started` events). Growth is measured from round
WARM_ROUND (imports done, the first screens drawn) to the last round: the target is < 10% for
this process; Flower's processes are shown beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from engine.core import events as ev
from engine.core.config_files import load_config
from engine.run.controller import RunController
from tui.app import live_app
from tui.screens.monitor import MonitorScreen

SIZE = (120, 40)
WARM_ROUND = 3
GROWTH_LIMIT = 0.10
POLL_S = 0.1
MIB = 2**20
# ClientApps come and go with each message: only processes that live for the whole run count.
SHORT_LIVED_ROLES = {"clientapp"}


Owner = tuple[str, int | None]  # (role, client)


class FlowerProcesses:
    """The RSS of the run's long-lived processes as each round's evaluation is recorded.

    Sampled on the controller's thread as it records `round_done`: by the time the monitor
    shows the last round, the run may already be ending its processes."""

    def __init__(self) -> None:
        self._pids: dict[Owner, int] = {}
        self.rss_at_round: dict[int, dict[Owner, int]] = {}

    def on_event(self, event: ev.Event) -> None:
        if event["type"] == ev.PROCESS_STARTED and event["role"] not in SHORT_LIVED_ROLES:
            self._pids[(event["role"], event.get("client"))] = event["pid"]
        elif event["type"] == ev.ROUND_DONE:
            self.rss_at_round[event["round"]] = self._rss()

    def _rss(self) -> dict[Owner, int]:
        sizes = {}
        for owner, pid in self._pids.items():
            try:
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE:
                    sizes[owner] = process.memory_info().rss
            except psutil.Error:  # exited (a restarted worker has a new PID by now)
                continue
        return sizes


@dataclass
class Sample:
    round: int
    own_rss: int
    flower_rss: dict[Owner, int] = field(default_factory=dict)


async def watch(controller: RunController, flower: FlowerProcesses) -> tuple[list[Sample], str]:
    """Run `controller` under the monitor until it ends; a sample per round it evaluated."""
    own = psutil.Process()
    samples: list[Sample] = []
    app = live_app(controller)
    async with app.run_test(headless=True, size=SIZE) as pilot:
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen)
        state = monitor.live_state
        while not state.finished:
            evaluated = sorted(n for n, result in state.rounds.items() if result.done)
            for number in evaluated[len(samples) :]:
                flower_rss = flower.rss_at_round.get(number, {})
                samples.append(Sample(number, own.memory_info().rss, flower_rss))
                print(f"  round {number}: {samples[-1].own_rss / MIB:.1f} MiB", flush=True)
            await pilot.pause(POLL_S)
        return samples, state.status


def growth(before: int, after: int) -> float:
    return after / before - 1


def report(samples: list[Sample]) -> bool:
    """The per-round table and the verdict; True when this process grew less than the limit."""
    warm = next((s for s in samples if s.round >= WARM_ROUND), None)
    last = samples[-1]
    if warm is None or warm is last:
        warm = samples[max(len(samples) - 2, 0)]
    print(f"{'round':>5} {'this process RSS':>17} {'vs warm':>8} {'Flower RSS':>11}")
    for sample in samples:
        since = f"{growth(warm.own_rss, sample.own_rss):+.1%}" if sample.round >= warm.round else ""
        print(
            f"{sample.round:>5} {sample.own_rss / MIB:>13.1f} MiB {since:>8} "
            f"{sum(sample.flower_rss.values()) / MIB:>7.1f} MiB"
        )
    own_growth = growth(warm.own_rss, last.own_rss)
    passed = own_growth < GROWTH_LIMIT
    print(
        f"this process (controller + TUI), round {warm.round} -> {last.round}: "
        f"{warm.own_rss / MIB:.1f} -> {last.own_rss / MIB:.1f} MiB, {own_growth:+.1%} "
        f"(limit +{GROWTH_LIMIT:.0%}): {'PASS' if passed else 'FAIL'}"
    )
    print(f"Flower processes, round {warm.round} -> {last.round} (for information):")
    for owner in sorted(warm.flower_rss, key=lambda o: (o[0], o[1] if o[1] is not None else -1)):
        role, client = owner
        name = role if client is None else f"{role} {client}"
        if owner not in last.flower_rss:
            print(f"  {name:<12} {warm.flower_rss[owner] / MIB:>7.1f} MiB -> gone (restarted?)")
            continue
        before, after = warm.flower_rss[owner], last.flower_rss[owner]
        print(
            f"  {name:<12} {before / MIB:>7.1f} MiB -> {after / MIB:>7.1f} MiB "
            f"{growth(before, after):+.1%}"
        )
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="a TOML file or preset (default: the default)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    config = load_config(args.config, [f"rounds={args.rounds}", *args.overrides])
    controller = RunController(config, Path(tempfile.mkdtemp(prefix="fedtui-soak-")))
    flower = FlowerProcesses()
    controller.subscribe(flower.on_event)
    print(
        f"{config.describe_strategy()}, {config.num_clients} clients, {config.rounds} rounds "
        f"({controller.run_dir}); RSS after each round's evaluation:",
        flush=True,
    )
    started = time.monotonic()
    try:
        samples, status = asyncio.run(watch(controller, flower))
    except KeyboardInterrupt:
        print("interrupted: aborting the run", file=sys.stderr)
        return 130
    finally:  # the monitor aborts a live run it leaves; this covers a failure before that
        if not controller.finished:
            controller.abort()
            controller.wait(60)
    print(f"run {status} in {time.monotonic() - started:.1f} s")
    if len(samples) < 2:
        print("fewer than two evaluated rounds: nothing to compare")
        return 1
    passed = report(samples)
    return 0 if passed and status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
