"""What a run looks like after a sequence of events: the same fold for live runs and replays."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.core import events as ev
from engine.core.config_files import assign_dotted
from engine.core.describe import crash_cause
from engine.core.event_fields import MAX_CLIENTS
from engine.core.status import ENDED_WELL, FINAL, Status
from engine.record.client_state import UP, ClientState
from engine.record.config_history import ConfigChange, ConfigHistory


@dataclass
class RoundResult:
    round: int
    done: bool = False
    eval_loss: float | None = None
    train_loss: float | None = None
    seconds: float | None = None
    eval_seconds: float | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    variate_bytes: tuple[int, int] | None = None  # SCAFFOLD's share of them (sent, received)
    clients_sent: int | None = None  # how many clients the round's model went to
    sampled: list[int] | None = None  # which ones (recorded since clients_per_round exists)
    client_train_loss: dict[int, float] = field(default_factory=dict)
    client_examples: dict[int, int] = field(default_factory=dict)
    client_tokens: dict[int, int] = field(default_factory=dict)
    client_seconds: dict[int, float] = field(default_factory=dict)  # local training time
    client_peak_memory: dict[int, int] = field(default_factory=dict)  # VRAM where seen, else RSS
    client_eval_loss: dict[int, float | None] = field(default_factory=dict)  # client_eval
    started_at: float | None = None
    learning_rate: float | None = None  # the clients', as lr_schedule set it
    pass_at: dict[int, float] = field(default_factory=dict)  # code_eval's pass@k, by k
    code_eval_seconds: float | None = None  # writing and testing the benchmark's code
    samples: list[tuple[str, str]] = field(default_factory=list)  # (prompt, completion)


@dataclass
class RunState:
    run_id: str | None = None
    imported_from: str | None = None  # a run rebuilt from a report: no per-client detail
    config: dict[str, Any] = field(default_factory=dict)
    status: str = Status.STARTING
    started_at: float | None = None
    last_event_at: float | None = None
    finished_at: float | None = None
    current_round: int = 0
    rounds: dict[int, RoundResult] = field(default_factory=dict)
    clients: dict[int, ClientState] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # errors and warnings, in order
    notice: str | None = None
    best_round: int | None = None
    best_eval_loss: float | None = None
    best_checkpoint_round: int | None = None
    early_stopping: dict[str, Any] = field(default_factory=dict)  # enabled, patience, min_delta
    rounds_without_improvement: int = 0
    early_stop_reason: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    gpu_unavailable: str | None = None
    model: dict[str, Any] = field(default_factory=dict)  # the model_info event's fields
    partition: dict[str, Any] = field(default_factory=dict)  # the partition_summary's fields
    last_crashed_client: int | None = None
    tokens_estimated: bool = False  # token counts taken as full seq_len samples (older records)
    served: bool = False  # its clients joined from other hosts (`fedtui serve`)
    config_history: ConfigHistory = field(default_factory=ConfigHistory)
    held_after: int | None = None  # the round a held run stopped after
    forked_from: dict[str, Any] | None = None  # {run, path, round}: a fork's parent
    parent: RunState | None = None  # the parent's record, where a viewer read it (no event)

    @classmethod
    def from_events(cls, events: Iterable[ev.Event]) -> RunState:
        state = cls()
        for event in events:
            state.apply(event)
        return state

    @property
    def total_rounds(self) -> int | None:
        return self.config.get("rounds")

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def rounds_completed(self) -> int:
        return max((r for r, result in self.rounds.items() if r > 0 and result.done), default=0)

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else self.last_event_at
        return (end or self.started_at) - self.started_at

    def apply(self, event: ev.Event) -> None:
        kind = event["type"]
        now = event.get("t")
        if now is not None:
            self.last_event_at = now
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)

    def _round(self, number: int) -> RoundResult:
        return self.rounds.setdefault(number, RoundResult(number))

    def _client(self, number: int) -> ClientState:
        return self.clients.setdefault(number, ClientState(number))

    @property
    def latest_change(self) -> ConfigChange | None:
        changes = self.config_history.changes
        return changes[-1] if changes else None

    def _on_run_started(self, event: ev.Event) -> None:
        self.run_id = event["run_id"]
        self.imported_from = event.get("imported_from")
        self.forked_from = event.get("forked_from")
        self.started_at = event.get("t")
        self._take_config(event["config"])
        self.config_history.started(event["config"], 0)

    def _on_run_resumed(self, event: ev.Event) -> None:
        self.finished_at = None
        self.early_stop_reason = None
        self.current_round = event["from_round"]
        for client in self.clients.values():  # every process starts afresh
            client.state = "waiting"
        self._take_config(event["config"])
        self.config_history.started(event["config"], event["from_round"] + 1)

    def _take_config(self, config: dict[str, Any]) -> None:
        self.config = copy.deepcopy(config)  # live changes update it: the config from now on
        self.status = Status.RUNNING
        self.held_after = None
        self.early_stopping = dict(config.get("early_stopping") or {})
        if self.imported_from is None:
            # a record's config is checked as it is read (event_fields), a live one when given
            for client in range(min(config.get("num_clients", 0), MAX_CLIENTS)):
                self._client(client)

    def _on_notice(self, event: ev.Event) -> None:
        self.notice = event["message"]

    def _on_client_eval(self, event: ev.Event) -> None:
        self._round(event["round"]).client_eval_loss[event["client"]] = event["eval_loss"]

    def _on_partition_summary(self, event: ev.Event) -> None:
        self.partition = {"partition": event["partition"], "clients": event["clients"]}

    def _on_model_info(self, event: ev.Event) -> None:
        self.model = {key: value for key, value in event.items() if key not in ("v", "t", "type")}

    def _on_round_started(self, event: ev.Event) -> None:
        self.current_round = event["round"]
        result = self._round(event["round"])
        result.clients_sent, result.sampled = event.get("clients"), event.get("sampled")
        result.started_at = event.get("t")
        result.learning_rate = _number(event.get("learning_rate"))
        sampled = set(result.sampled or ()) if self.config.get("clients_per_round") else None
        for client in self.clients.values():
            client.round_started(event["round"], sampled is None or client.client in sampled)

    def _on_client_progress(self, event: ev.Event) -> None:
        self._client(event["client"]).progress(event)

    def _on_client_round_done(self, event: ev.Event) -> None:
        self._client(event["client"]).round_done(event)
        result = self._round(event["round"])
        result.client_train_loss[event["client"]] = event["train_loss"]
        result.client_examples[event["client"]] = event["examples"]
        if event.get("seconds") is not None:
            result.client_seconds[event["client"]] = event["seconds"]
        peak = event.get("peak_vram_bytes") or event.get("peak_rss_bytes")
        if peak is not None:
            result.client_peak_memory[event["client"]] = peak
        tokens = event.get("tokens")
        if tokens is None and event.get("seconds") is not None:  # recorded before token counts
            self.tokens_estimated = True
            epochs, seq_len = self.config.get("local_epochs", 1), self.config.get("seq_len", 0)
            tokens = event["examples"] * epochs * seq_len
        if tokens is not None:
            result.client_tokens[event["client"]] = tokens

    def _on_round_done(self, event: ev.Event) -> None:
        result = self._round(event["round"])
        result.done = True
        result.eval_loss = event["eval_loss"]
        result.train_loss = event.get("train_loss")
        result.seconds = event.get("seconds")
        result.eval_seconds = event.get("eval_seconds")
        result.bytes_sent = event.get("bytes_sent")
        result.bytes_received = event.get("bytes_received")
        if "variate_bytes_sent" in event:
            result.variate_bytes = (
                event["variate_bytes_sent"],
                event.get("variate_bytes_received") or 0,
            )
        self.current_round = event["round"]
        self.rounds_without_improvement = event.get("rounds_without_improvement", 0)
        if "best_round" in event:  # the ServerApp's own judgement
            self.best_round = event["best_round"]
            best = self.rounds.get(event["best_round"])
            self.best_eval_loss = best.eval_loss if best is not None else None
        elif event["eval_loss"] is not None and (
            self.best_eval_loss is None or event["eval_loss"] < self.best_eval_loss
        ):
            # a run imported from a report's tables has no ServerApp judgement to take
            self.best_round, self.best_eval_loss = event["round"], event["eval_loss"]

    def _on_code_eval(self, event: ev.Event) -> None:
        result = self._round(event["round"])
        result.pass_at = {
            int(k): float(value)
            for k, value in event["pass_at"].items()
            if str(k).isdigit() and _number(value) is not None
        }
        parts = ("generation_seconds", "execution_seconds")
        result.code_eval_seconds = sum(_number(event.get(part)) or 0.0 for part in parts)

    def _on_generated(self, event: ev.Event) -> None:
        self._round(event["round"]).samples = [
            (sample["prompt"], sample["completion"])
            for sample in event["samples"]
            if isinstance(sample, dict)
            and isinstance(sample.get("prompt"), str)
            and isinstance(sample.get("completion"), str)
        ]

    def _on_checkpoint_saved(self, event: ev.Event) -> None:
        if event["kind"] == "best":
            self.best_checkpoint_round = event["round"]

    def _on_early_stopping_changed(self, event: ev.Event) -> None:
        told = {"enabled": event["enabled"], "patience": event["patience"]}
        self.early_stopping.update(told, min_delta=event.get("min_delta", 0.0))

    def _on_config_changed(self, event: ev.Event) -> None:
        change = ConfigChange(
            event["round"], event["key"], event["old"], event["new"], event.get("source")
        )
        self.config_history.changed(change)
        assign_dotted(self.config, change.key, change.new)
        if change.key.startswith("early_stopping."):  # what the header says from now on
            self.early_stopping[change.key.partition(".")[2]] = change.new

    def _on_held(self, event: ev.Event) -> None:
        if not self.finished:
            self.status, self.held_after = Status.HELD, event["round"]

    def _on_continued(self, event: ev.Event) -> None:
        if self.status == Status.HELD:
            self.status = Status.RUNNING
        self.held_after = None

    def _on_gpu_sample(self, event: ev.Event) -> None:
        self.devices = event["devices"]
        self.gpu_unavailable = event.get("unavailable")
        totals = {d["index"]: d.get("memory_total") for d in self.devices}
        for key, sample in event["clients"].items():
            self._client(int(key)).memory_sample(sample, totals, event.get("t"))

    def _on_warning(self, event: ev.Event) -> None:
        self.errors.append(event["message"])
        if event.get("client") is not None:
            self._client(event["client"]).memory_warning = True

    def _on_stop_requested(self, event: ev.Event) -> None:
        if not self.finished:
            self.status = Status.STOPPING

    def _on_early_stop(self, event: ev.Event) -> None:
        self.early_stop_reason = event.get("reason")
        self.best_round, self.best_eval_loss = event["best_round"], event["best_eval_loss"]

    def _on_run_finished(self, event: ev.Event) -> None:
        self.status = event["status"]
        self.held_after = None
        self.finished_at = event.get("t")
        if event.get("best_round") is not None:
            self.best_round, self.best_eval_loss = event["best_round"], event["best_eval_loss"]
        up_state = "done" if event["status"] in ENDED_WELL else "ended"
        for client in self.clients.values():
            if client.state in UP:
                client.state = up_state
            elif client.state == "restarting":  # the run ended before it came back
                client.state = "crashed"

    def _on_error(self, event: ev.Event) -> None:
        self.errors.append(event["message"])
        if event.get("client") is not None:
            client = self._client(event["client"])
            if not client.down_at(event.get("round")):  # a dead process says more
                client.state = "failed"

    def _on_client_crashed(self, event: ev.Event) -> None:
        self.last_crashed_client = event["client"]
        self._client(event["client"]).crashed(event, crash_cause(event))

    def _on_client_restarted(self, event: ev.Event) -> None:
        self._client(event["client"]).state = "waiting"

    def _on_waiting_for_clients(self, event: ev.Event) -> None:
        self.served = True
        for number in event["missing"]:
            self._client(number).state = "missing"
        missing = ", ".join(map(str, event["missing"]))
        self.notice = f"waiting for clients to join (missing: {missing})"

    def _on_client_joined(self, event: ev.Event) -> None:
        self.served = True
        client = self._client(event["client"])
        client.state, client.address = "joined", event["address"]
        self.notice = f"client {client.client} joined from {client.address}"


_HANDLERS = {
    ev.RUN_STARTED: RunState._on_run_started,
    ev.RUN_RESUMED: RunState._on_run_resumed,
    ev.CHECKPOINT_SAVED: RunState._on_checkpoint_saved,
    ev.EARLY_STOPPING_CHANGED: RunState._on_early_stopping_changed,
    ev.CONFIG_CHANGED: RunState._on_config_changed,
    ev.HELD: RunState._on_held,
    ev.CONTINUED: RunState._on_continued,
    ev.NOTICE: RunState._on_notice,
    ev.MODEL_INFO: RunState._on_model_info,
    ev.PARTITION_SUMMARY: RunState._on_partition_summary,
    ev.CLIENT_EVAL: RunState._on_client_eval,
    ev.ROUND_STARTED: RunState._on_round_started,
    ev.CLIENT_PROGRESS: RunState._on_client_progress,
    ev.CLIENT_ROUND_DONE: RunState._on_client_round_done,
    ev.ROUND_DONE: RunState._on_round_done,
    ev.CODE_EVAL: RunState._on_code_eval,
    ev.GENERATED: RunState._on_generated,
    ev.GPU_SAMPLE: RunState._on_gpu_sample,
    ev.WARNING: RunState._on_warning,
    ev.STOP_REQUESTED: RunState._on_stop_requested,
    ev.EARLY_STOP: RunState._on_early_stop,
    ev.RUN_FINISHED: RunState._on_run_finished,
    ev.ERROR: RunState._on_error,
    ev.CLIENT_CRASHED: RunState._on_client_crashed,
    ev.CLIENT_RESTARTED: RunState._on_client_restarted,
    ev.WAITING_FOR_CLIENTS: RunState._on_waiting_for_clients,
    ev.CLIENT_JOINED: RunState._on_client_joined,
}


def _number(value: Any) -> float | None:
    """A recorded number, or None for anything else (a record may come from anywhere)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
