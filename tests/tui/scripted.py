"""A live run whose events the test writes: the monitor cannot tell it from RunController."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.live_config import change_between_rounds
from engine.core.status import FINAL


class ScriptedRun:
    def __init__(
        self,
        config: RunConfig | None = None,
        run_id: str = "scripted-run",
        t0: float = 1_800_000_000.0,
    ) -> None:
        self.config = config or dataclasses.replace(RunConfig(), name="scripted", rounds=3)
        self.run_id = run_id
        self.subscribers = []
        self.started = self.stop_requested = self.aborted = self.detached = False
        self.round_begun = 0  # the last round that started: a change applies from the next
        self.holding = False
        self.finished = False
        self.status = "created"
        self.clock = t0

    def subscribe(self, subscriber) -> None:
        self.subscribers.append(subscriber)

    def emit(self, type_: str, seconds_later: float = 1.0, **fields) -> dict:
        self.clock += seconds_later
        event = ev.stamp(ev.make(type_, **fields), now=self.clock)
        if type_ == ev.RUN_FINISHED:
            self.finished, self.status = True, fields["status"]
        if type_ == ev.ROUND_STARTED:
            self.round_begun = fields["round"]
        for subscriber in self.subscribers:
            subscriber(event)
        return event

    def start(self):
        self.started, self.status = True, "running"
        self.emit(ev.RUN_STARTED, run_id=self.run_id, config=self.config.to_dict())
        self.emit(
            ev.MODEL_INFO,
            model=self.config.model,
            total_params=995_072,
            trainable_params=8_192,
            precision="bf16",
            transfer_dtype="fp16",
            device="cpu",
            lora_r=8,
            gradient_checkpointing=False,
        )
        return self

    def request_stop(self, source: str = "user") -> None:
        self.stop_requested = True
        self.emit(ev.STOP_REQUESTED, source=source)

    def change_config(self, changes: dict, source: str = "user") -> dict:
        """As the controller and the ServerApp do: checked as --set checks it, then one
        `config_changed` per key, from the round after the one begun."""
        self.config, changed = change_between_rounds(self.config, changes)
        events = [
            self.emit(
                ev.CONFIG_CHANGED,
                round=self.round_begun + 1,
                key=change.key,
                old=change.old,
                new=change.new,
                source=source,
            )
            for change in changed
        ]
        return {"changes": events, "unanswered": []}

    def hold(self, source: str = "user") -> None:
        self.holding = True

    def continue_run(self, source: str = "user") -> None:
        self.holding = False

    def abort(self) -> None:
        self.aborted = True
        if not self.finished:
            self.emit(ev.RUN_FINISHED, status="aborted")

    def detach(self) -> None:
        self.detached = True

    def wait(self, timeout=None):
        return self.status if self.finished else None

    # a few rounds' worth of what a real run says

    def crash_client(self, client: int, round_: int, restarting: bool = True) -> None:
        """Client `client`'s warm worker is killed mid-round: the controller sees it die, and
        the ServerApp records the error its relay replies with."""
        self.emit(
            ev.CLIENT_CRASHED,
            client=client,
            role="worker",
            pid=4200 + client,
            returncode=-9,
            round=round_,
            restarting=restarting,
        )
        self.emit(
            ev.ERROR,
            source="clientapp",
            client=client,
            round=round_,
            message=f"client {client} failed in round {round_}: worker {client} died",
        )

    def restart_client(self, client: int, attempt: int = 1) -> None:
        self.emit(
            ev.CLIENT_RESTARTED, client=client, role="worker", pid=4300 + client, attempt=attempt
        )

    def play_round(
        self,
        number: int,
        eval_loss: float,
        client_losses=(7.0, 7.2),
        steps: int = 32,
        sampled: list[int] | None = None,
    ) -> None:
        """A round in which clients 0, 1, ... (or the `sampled` ones) train to these losses."""
        clients = sampled if sampled is not None else list(range(len(client_losses)))
        self.emit(ev.ROUND_STARTED, round=number, clients=len(clients), sampled=clients)
        for client, loss in zip(clients, client_losses):
            for step in (1, steps // 2, steps):
                self.emit(
                    ev.CLIENT_PROGRESS,
                    0.5,
                    round=number,
                    client=client,
                    step=step,
                    steps_total=steps,
                    loss=loss + 0.5 * (steps - step) / steps,
                )
            self.emit(
                ev.CLIENT_ROUND_DONE,
                round=number,
                client=client,
                train_loss=loss,
                examples=256,
                steps=steps,
                seconds=3.0 + client,
                tokens=8 * steps * 120,
            )
        self.emit(
            ev.ROUND_DONE,
            round=number,
            eval_loss=eval_loss,
            train_loss=sum(client_losses) / len(client_losses),
            seconds=12.0,
            eval_seconds=0.5,
            bytes_sent=7_900_000,
            bytes_received=7_900_000,
        )

    def sample_gpu(self, used_gib: int, rss_gib: float = 2.0) -> None:
        """A GPU sample: client 0 uses `used_gib` of an 80 GiB card as NVML sees it; client 1
        is in a container NVML cannot see into (host RSS only)."""
        self.emit(
            ev.GPU_SAMPLE,
            devices=[
                {
                    "index": 0,
                    "name": "NVIDIA H100 80GB HBM3",
                    "memory_total": 80 << 30,
                    "memory_used": (used_gib + 12) << 30,
                    "utilization": 87,
                    "lost": False,
                }
            ],
            clients={
                "0": {
                    "rss_bytes": 3 << 30,
                    "vram_bytes": used_gib << 30,
                    "device": 0,
                    "source": "nvml",
                },
                "1": {
                    "rss_bytes": int(rss_gib * 2**30),
                    "vram_bytes": None,
                    "device": None,
                    "source": None,
                },
            },
        )

    def play_until_training(self, rounds: list[float]) -> None:
        """Round 0's evaluation, `rounds` finished with these eval losses, then the next round
        half done."""
        self.emit(ev.NOTICE, message="preparing data")
        self.emit(ev.ROUND_DONE, round=0, eval_loss=8.3, seconds=0.5, eval_seconds=0.5)
        for number, eval_loss in enumerate(rounds, start=1):
            self.play_round(number, eval_loss, client_losses=(eval_loss + 0.2, eval_loss + 0.3))
        current = len(rounds) + 1
        self.emit(ev.ROUND_STARTED, round=current, clients=2)
        for used in (9, 21, 30):
            self.sample_gpu(used)
        self.emit(ev.CLIENT_PROGRESS, round=current, client=0, step=20, steps_total=32, loss=6.1)
        self.emit(
            ev.CLIENT_PROGRESS,
            round=current,
            client=1,
            step=8,
            steps_total=32,
            loss=6.4,
            vram_bytes=11 << 30,
        )


class ScriptedSweep:
    """A live sweep whose members' events the test writes: SweepMonitorScreen cannot tell it
    from engine.run.sweep.Sweep."""

    def __init__(self, names: list[str], sweep_dir: Path) -> None:
        self.sweep_id = sweep_dir.name
        self.sweep_dir = sweep_dir
        self.members = [SimpleNamespace(name=name) for name in names]
        self.parallel = 1
        self.status = "created"
        self.stop_requested = self.aborted = False
        self.subscribers = []
        self.runs = {name: ScriptedRun(run_id=name) for name in names}

    def subscribe(self, subscriber) -> None:
        self.subscribers.append(subscriber)
        for name, run in self.runs.items():
            run.subscribe(lambda event, name=name: subscriber(name, event))

    def start(self):
        self.status = "running"
        return self

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def request_stop(self, source: str = "user") -> None:
        self.stop_requested, self.status = True, "stopping"

    def abort(self) -> None:
        self.aborted, self.status = True, "aborted"

    def wait(self, timeout=None):
        return self.status if self.finished else None
