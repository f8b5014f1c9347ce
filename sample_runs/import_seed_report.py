"""Rebuild the seed report's run (OPT-350M, FedProx mu=0.1, 10 rounds) as a replayable run folder.

    python sample_runs/import_seed_report.py

Reads `seed-opt350m-codeparrot-fedprox-mu0.1/report.txt` (the report that started fedtui) and
writes `config.toml` and `events.jsonl` beside it: the setup table as the config, the
centralized eval loss (rounds 0-9) and aggregated train loss (rounds 1-10) exactly as the
report gives them, and the total server runtime. The report has no per-client detail and no
per-round timing: the run is marked imported, and its events are spaced evenly over the
reported runtime only so that a replay has a clock.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from engine.core import events as ev
from engine.core.config_files import load_config, to_toml

FOLDER = Path(__file__).parent / "seed-opt350m-codeparrot-fedprox-mu0.1"
REPORT = FOLDER / "report.txt"


def table_after(text: str, heading: str) -> dict[int, float]:
    """The `| round | value |` rows of the first table after `heading`."""
    section = text[text.index(heading) :]
    rows = {}
    for line in section.splitlines()[1:]:
        match = re.match(r"\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|", line)
        if match:
            rows[int(match[1])] = float(match[2])
        elif rows and not line.startswith("|"):
            break
    return rows


def main() -> int:
    text = REPORT.read_text(encoding="utf-8")
    eval_loss = table_after(text, "Centralized Eval Loss")
    train_loss = table_after(text, "Distributed Train Loss")
    runtime = float(
        re.search(r"Server Runtime\*\*\s*\|\s*([\d,]+) seconds", text)[1].replace(",", "")
    )
    date = re.search(r"Experiment Date:\*\*\s*(.+)", text)[1].strip()
    started = datetime.strptime(date, "%d %B %Y").replace(tzinfo=UTC).timestamp()

    config = load_config(
        "opt350m-codeparrot-fedprox",
        ['name="seed report: FedProx mu=0.1"', "early_stopping.enabled=false"],
    )
    rounds = sorted(set(eval_loss) | set(train_loss))
    step = runtime / max(rounds)
    events = [
        ev.stamp(
            ev.make(
                ev.RUN_STARTED,
                run_id=FOLDER.name,
                config=config.to_dict(),
                version="imported",
                imported_from=f"report: {REPORT.name}",
            ),
            now=started,
        )
    ]
    for number in rounds:
        events.append(
            ev.stamp(
                ev.make(
                    ev.ROUND_DONE,
                    round=number,
                    eval_loss=eval_loss.get(number),
                    train_loss=train_loss.get(number),
                ),
                now=started + number * step,
            )
        )
    best_round = min(eval_loss, key=eval_loss.get)
    events.append(
        ev.stamp(
            ev.make(
                ev.RUN_FINISHED,
                status="completed",
                rounds_completed=max(rounds),
                best_round=best_round,
                best_eval_loss=eval_loss[best_round],
                seconds=runtime,
            ),
            now=started + runtime,
        )
    )
    (FOLDER / "config.toml").write_text(to_toml(config), encoding="utf-8")
    with open(FOLDER / "events.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(ev.encode(event) for event in events)
    print(
        f"wrote {FOLDER}: rounds {rounds[0]}-{rounds[-1]}, best eval {eval_loss[best_round]} "
        f"at round {best_round}, runtime {runtime:,.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
