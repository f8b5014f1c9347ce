"""The TUI under load: opening a 100,000-event run, and 1,000 events per second live.

    python -m benchmarks.tui_throughput

1. Replay open: writes a 100,000-event run (a 10-client, 100-round run's worth of step
   progress), then times `read_run_events` + the monitor's first complete screen.
2. Live ingest: an engine thread publishes 1,000 events per second for 5 s while keys are
   pressed; prints key-to-handled latency and how many chart redraws the 5,000 events caused.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.record.run_folders import read_run_events
from tests.tui.scripted import ScriptedRun
from tui.app import live_app, replay_app
from tui.widgets.run_chart import RunChart

SIZE = (120, 40)


def write_big_run(folder: Path, total: int = 100_000, clients: int = 10) -> Path:
    config = RunConfig(num_clients=clients, rounds=100).to_dict()
    folder.mkdir(parents=True)
    t, written = 1_000.0, 0
    with open(folder / "events.jsonl", "w") as handle:

        def put(type_, **fields):
            nonlocal t, written
            t += 0.01
            handle.write(ev.encode(ev.stamp(ev.make(type_, **fields), now=t)))
            written += 1

        put(ev.RUN_STARTED, run_id="big", config=config)
        put(ev.ROUND_DONE, round=0, eval_loss=8.0)
        steps = (total - 2) // 100 // clients - 2
        for number in range(1, 101):
            put(ev.ROUND_STARTED, round=number, clients=clients)
            for client in range(clients):
                for step in range(1, steps + 1):
                    put(
                        ev.CLIENT_PROGRESS,
                        round=number,
                        client=client,
                        step=step,
                        steps_total=steps,
                        loss=7.0 - number / 50,
                    )
                put(
                    ev.CLIENT_ROUND_DONE,
                    round=number,
                    client=client,
                    examples=100,
                    train_loss=7.0 - number / 50,
                )
            put(ev.ROUND_DONE, round=number, eval_loss=7.5 - number / 60, seconds=10.0)
        while written < total - 1:
            put(ev.NOTICE, message="padding")
        put(ev.RUN_FINISHED, status="completed")
    return folder


async def replay_open_seconds(folder: Path) -> tuple[float, float, int]:
    started = time.perf_counter()
    events = read_run_events(folder)
    read = time.perf_counter() - started
    app = replay_app([("big", events)])
    async with app.run_test(size=SIZE) as pilot:
        chart = app.screen.query_one(RunChart)
        while chart.renders == 0:
            await pilot.pause(0.01)
        shown = time.perf_counter() - started
    return read, shown, len(events)


async def live_ingest(rate: int = 1_000, seconds: float = 5.0):
    scripted = ScriptedRun(config=RunConfig(rounds=10_000, num_clients=4))
    app = live_app(scripted, clock=None)
    async with app.run_test(size=SIZE) as pilot:
        chart = app.screen.query_one(RunChart)
        sent = [0]

        def produce():
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                tick = time.monotonic()
                for _ in range(rate // 10):
                    sent[0] += 1
                    n = sent[0]
                    if n % 100 == 0:
                        scripted.emit(
                            ev.ROUND_DONE,
                            0.001,
                            round=n // 100,
                            eval_loss=8 - n / 1e5,
                            train_loss=8 - n / 1e5,
                        )
                    else:
                        scripted.emit(
                            ev.CLIENT_PROGRESS,
                            0.001,
                            round=n // 100 + 1,
                            client=n % 4,
                            step=n % 100,
                            steps_total=100,
                            loss=7.0,
                        )
                time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))

        producer = threading.Thread(target=produce)
        renders_before = chart.renders
        producer.start()
        latencies = []
        while producer.is_alive():
            before = chart.log_y
            pressed = time.perf_counter()
            await pilot.press("l")
            while chart.log_y is before:
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - pressed)
            await pilot.pause(0.25)
        producer.join()
        await pilot.pause(0.3)
        return sent[0], chart.renders - renders_before, latencies


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_big_run(Path(tmp) / "big")
        read, shown, count = asyncio.run(replay_open_seconds(folder))
    print(
        f"replay open: {count:,} events read in {read:.2f} s, monitor shown after "
        f"{shown:.2f} s (target < 2 s)"
    )
    sent, renders, latencies = asyncio.run(live_ingest())
    print(
        f"live ingest: {sent:,} events in 5 s ({sent / 5:,.0f}/s); chart redraws {renders} "
        f"({sent / max(renders, 1):,.0f} events per redraw)"
    )
    print(
        f"key latency under load: median {1000 * statistics.median(latencies):.0f} ms, "
        f"max {1000 * max(latencies):.0f} ms over {len(latencies)} key presses"
    )


if __name__ == "__main__":
    main()
