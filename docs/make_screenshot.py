"""The README's screenshot: fedtui itself replaying and comparing the recorded sample runs.

python -m docs.make_screenshot     # writes docs/comparison.svg
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.runs import read_run_events, sample_runs_folder
from tui.app import replay_app

RUNS = ("fedprox-mu0.1", "fedprox-mu0.01", "fedprox-mu1.0", "fedavg", "fedavgm")
SAMPLE_RUNS = sample_runs_folder()
OUTPUT = Path(__file__).parent / "comparison.svg"


async def main() -> None:
    recorded = [
        (name, read_run_events(SAMPLE_RUNS / name))
        for name in RUNS
        if (SAMPLE_RUNS / name).is_dir()
    ]
    app = replay_app(recorded)
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.pause(1.0)
        app.save_screenshot(filename=OUTPUT.name, path=str(OUTPUT.parent))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    asyncio.run(main())
