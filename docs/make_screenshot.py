"""The README's screenshot: fedtui itself replaying and comparing the recorded sample runs.

python -m docs.make_screenshot     # writes docs/comparison.svg
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.record.run_folders import read_run_events, sample_runs_folder
from tui.app import replay_app

RUNS = {  # name shown: folder in sample_runs/
    "fedprox mu=0.1": "fedprox-mu-sweep/proximal_mu=0.1",
    "fedprox mu=0.01": "fedprox-mu-sweep/proximal_mu=0.01",
    "fedprox mu=1.0": "fedprox-mu-sweep/proximal_mu=1.0",
    "fedavg": "fedavg",
    "fedavgm": "fedavgm",
}
SAMPLE_RUNS = sample_runs_folder()
OUTPUT = Path(__file__).parent / "comparison.svg"


async def main() -> None:
    recorded = [(name, read_run_events(SAMPLE_RUNS / folder)) for name, folder in RUNS.items()]
    app = replay_app(recorded)
    async with app.run_test(size=(140, 44)):
        while not app.screen.settled:  # the chart drawn, every event shown
            await asyncio.sleep(0.05)
        app.save_screenshot(filename=OUTPUT.name, path=str(OUTPUT.parent))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    asyncio.run(main())
