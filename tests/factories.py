"""Run folders and event streams for tests that need a recorded run without training one."""

import dataclasses
from pathlib import Path

from engine.core import events as ev
from engine.core.config import RunConfig


def write_run(folder: Path, events: list[dict]) -> Path:
    """A run folder holding `events` (stamped at t = 1000, 1001, ...)."""
    folder.mkdir(parents=True)
    with open(folder / "events.jsonl", "w") as handle:
        for index, event in enumerate(events):
            handle.write(ev.encode(ev.stamp(ev.make(**event), now=1000.0 + index)))
    return folder


def simple_run_events(
    run_id="r1", rounds=((8.0, None), (7.0, 7.5), (6.5, 6.9)), status="completed", num_clients=2
):
    config = dataclasses.replace(RunConfig(), rounds=len(rounds) - 1, num_clients=num_clients)
    events = [dict(type_=ev.RUN_STARTED, run_id=run_id, config=config.to_dict())]
    for number, (eval_loss, train_loss) in enumerate(rounds):
        if number:
            events.append(dict(type_=ev.ROUND_STARTED, round=number, clients=num_clients))
            for client in range(num_clients):
                events.append(
                    dict(
                        type_=ev.CLIENT_ROUND_DONE,
                        round=number,
                        client=client,
                        train_loss=train_loss + client * 0.1,
                        examples=10 + client,
                        seconds=2.0,
                    )
                )
        events.append(
            dict(
                type_=ev.ROUND_DONE,
                round=number,
                eval_loss=eval_loss,
                train_loss=train_loss,
                seconds=10.0 + number,
                bytes_sent=100 * number,
                bytes_received=90 * number,
            )
        )
    events.append(dict(type_=ev.RUN_FINISHED, status=status))
    return events
