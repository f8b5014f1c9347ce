"""The ServerApp: rounds of federated training with central evaluation, stop checks and events.

The strategy (Flower's FedProx, FedAvg or FedAvgM) decides what each client gets and how replies
are aggregated; `FederatedRun` owns the round loop around it, because Flower's
`Strategy.start()` has no hook to stop between rounds, and because pulling replies one by one
lets each client's result show up the moment it arrives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx

from engine import checkpoints, events as ev
from engine.channel import EventPublisher
from engine.config import RunConfig
from engine.flower.run_config import config_from_run_config

# The ServerApp runs beside the SuperLink, on the controller's machine: it writes checkpoints
# and its log into the run folder, and learns from the controller where a resumed run stands.
RUN_DIR_ENV = "FEDTUI_RUN_DIR"
RESUME_ENV = "FEDTUI_RESUME"
REPLY_POLL_S = 0.2

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_dir = Path(os.environ[RUN_DIR_ENV]) if os.environ.get(RUN_DIR_ENV) else None
    if run_dir is not None:
        _log_to_file(run_dir / "logs" / "serverapp.log")
    config = config_from_run_config(context.run_config)
    publisher = EventPublisher.from_env(role="server")
    try:
        resume = json.loads(os.environ.get(RESUME_ENV) or "null")
        FederatedRun(config, grid, publisher, run_dir, resume).run()
    except Exception as err:
        if publisher:
            publisher.publish(ev.ERROR, source="serverapp", message=f"ServerApp failed: {err!r}")
            publisher.publish(ev.RUN_FINISHED, status="failed")
        raise
    finally:
        if publisher:
            publisher.close()


def weighted_train_loss(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted mean of the clients' train losses."""
    pairs = [(record["metrics"]["train-loss"], record["metrics"][weight_key]) for record in records]
    total = sum(weight for _, weight in pairs)
    return MetricRecord({"train-loss": sum(loss * weight for loss, weight in pairs) / total})


def build_strategy(config: RunConfig) -> FedAvg:
    common = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=config.num_clients,
                  min_available_nodes=config.num_clients, train_metrics_aggr_fn=weighted_train_loss)
    if config.strategy == "fedprox":
        return FedProx(proximal_mu=config.proximal_mu, **common)
    if config.strategy == "fedavgm":
        return FedAvgM(server_learning_rate=config.server_learning_rate,
                       server_momentum=config.server_momentum, **common)
    return FedAvg(**common)


class FederatedRun:
    def __init__(self, config: RunConfig, grid: Grid, publisher: EventPublisher | None,
                 run_dir: Path | None = None, resume: dict | None = None) -> None:
        from engine import data, model as models

        self.config = config
        self.grid = grid
        self.publisher = publisher
        self.run_dir = run_dir
        self.resume = resume
        self.strategy = build_strategy(config)
        self.device = models.resolve_device(config)
        self.model = models.build_model(config, pretrained=resume is None)
        self.tokenizer = data.load_tokenizer(config)
        self.eval_samples = data.load_eval_samples(config)
        self.stop_requested = False
        self.client_of_node: dict[int, int] = {}
        self.early_stopping = dataclasses.asdict(config.early_stopping)  # changeable live
        self.best_round: int | None = None
        self.best_eval_loss = math.inf
        self.rounds_without_improvement = 0
        self.train_loss: float | None = None  # of the round being finished
        self.bytes_sent = self.bytes_received = 0

    def run(self) -> None:
        from engine import model as models

        if self.resume is None:
            arrays = ArrayRecord(models.state_dict_for_transfer(self.model))
            self._finish_round(0, arrays, started=time.monotonic())
            first_round = 1
        else:
            arrays = self._resumed_arrays()
            first_round = self.resume["round"] + 1
        status, completed = "completed", first_round - 1
        for server_round in range(first_round, self.config.rounds + 1):
            self._read_commands()
            if self.stop_requested:
                status = "stopped"
                break
            started = time.monotonic()
            arrays = self._train(server_round, arrays)
            if arrays is None:
                status = "failed"
                break
            completed = server_round
            if self._finish_round(server_round, arrays, started):
                status = "stopped"
                break
        self._publish(ev.RUN_FINISHED, status=status, rounds_completed=completed,
                      best_round=self.best_round, best_eval_loss=self.best_eval_loss)

    def _resumed_arrays(self) -> ArrayRecord:
        """The global model the stopped run ended with, and where its early stopping stood."""
        from safetensors.torch import load_file

        from engine import model as models

        last = self.run_dir / "checkpoints" / "last"
        info = checkpoints.read_info(last)
        if info is None or info["round"] != self.resume["round"]:
            raise RuntimeError(f"cannot resume: {last} does not hold round {self.resume['round']}")
        models.load_transferred(self.model, load_file(last / checkpoints.WEIGHTS_FILE))
        self.best_round = self.resume.get("best_round")
        if self.resume.get("best_eval_loss") is not None:
            self.best_eval_loss = self.resume["best_eval_loss"]
        self.rounds_without_improvement = self.resume.get("rounds_without_improvement") or 0
        return ArrayRecord(models.state_dict_for_transfer(self.model))

    def _train(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord | None:
        messages = list(self.strategy.configure_train(server_round, arrays, ConfigRecord(),
                                                      self.grid))
        self._publish(ev.ROUND_STARTED, round=server_round, clients=len(messages),
                      start_model_sha256=fingerprint(arrays))
        self.bytes_sent = sum(message.content["arrays"].count_bytes() for message in messages)
        replies = list(self._collect_replies(server_round, messages))
        valid = [reply for reply in replies if not reply.has_error()]
        self.bytes_received = sum(reply.content["arrays"].count_bytes() for reply in valid)
        aggregated, metrics = self.strategy.aggregate_train(server_round, replies)
        if aggregated is None:
            self._publish(ev.ERROR, source="serverapp", round=server_round,
                          message=f"round {server_round}: no client returned a model")
            return None
        self.train_loss = metrics["train-loss"] if metrics else None
        return aggregated

    def _collect_replies(self, server_round: int, messages: list[Message]) -> Iterable[Message]:
        waiting = set(self.grid.push_messages(messages))
        deadline = time.monotonic() + self.config.round_timeout
        while waiting and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(waiting):
                waiting.discard(reply.metadata.reply_to_message_id)
                self._report_reply(server_round, reply)
                yield reply
            self._read_commands()
            if waiting:
                time.sleep(REPLY_POLL_S)
        if waiting:
            self._publish(ev.ERROR, source="serverapp", round=server_round,
                          message=f"round {server_round}: {len(waiting)} client(s) did not reply "
                                  f"within round_timeout={self.config.round_timeout:g}s")

    def _report_reply(self, server_round: int, reply: Message) -> None:
        node = reply.metadata.src_node_id
        if reply.has_error():
            client = self.client_of_node.get(node)
            who = f"client {client}" if client is not None else f"node {node}"
            self._publish(ev.ERROR, source="clientapp", round=server_round, client=client,
                          message=f"{who} failed in round {server_round}: {reply.error.reason}")
            return
        metrics = reply.content["metrics"]
        client = int(metrics["partition-id"])
        self.client_of_node[node] = client
        self._publish(ev.CLIENT_ROUND_DONE, round=server_round, client=client,
                      train_loss=metrics["train-loss"], examples=int(metrics["num-examples"]),
                      steps=int(metrics["steps"]), seconds=metrics["train-seconds"],
                      peak_rss_bytes=int(metrics["peak-rss-bytes"]),
                      peak_vram_bytes=_optional_int(metrics.get("peak-vram-bytes")))

    def _finish_round(self, server_round: int, arrays: ArrayRecord, started: float) -> bool:
        """Central evaluation and the round's record; True when early stopping ends the run."""
        from engine import model as models
        from engine.flower import task

        eval_started = time.monotonic()
        models.load_transferred(self.model, arrays.to_torch_state_dict())
        eval_loss = task.evaluate(self.model, self.eval_samples,
                                  batch_size=self.config.eval_batch_size, device=self.device)
        eval_seconds = time.monotonic() - eval_started
        improved = self._track_best(server_round, eval_loss)
        self._save_checkpoints(server_round, eval_loss, improved)
        self._publish(ev.ROUND_DONE, round=server_round, eval_loss=eval_loss,
                      train_loss=self.train_loss, seconds=time.monotonic() - started,
                      eval_seconds=eval_seconds, bytes_sent=self.bytes_sent,
                      bytes_received=self.bytes_received, model_sha256=fingerprint(arrays),
                      best_round=self.best_round,
                      rounds_without_improvement=self.rounds_without_improvement)
        return self._early_stop(server_round)

    def _track_best(self, server_round: int, eval_loss: float) -> bool:
        if eval_loss < self.best_eval_loss - self.early_stopping["min_delta"]:
            self.rounds_without_improvement = 0
        else:
            self.rounds_without_improvement += 1
        if eval_loss < self.best_eval_loss:
            self.best_round, self.best_eval_loss = server_round, eval_loss
            return True
        return False

    def _early_stop(self, server_round: int) -> bool:
        self._read_commands()
        policy = self.early_stopping
        if not policy["enabled"] or self.rounds_without_improvement < policy["patience"]:
            return False
        if server_round >= self.config.rounds:
            return False
        self._publish(ev.EARLY_STOP, round=server_round, best_round=self.best_round,
                      best_eval_loss=self.best_eval_loss, patience=policy["patience"],
                      reason=f"central eval loss has not improved by more than "
                             f"{policy['min_delta']:g} for {self.rounds_without_improvement} "
                             f"round(s) (patience {policy['patience']})")
        return True

    def _save_checkpoints(self, server_round: int, eval_loss: float, improved: bool) -> None:
        """`last` every round (what a resume starts from), `best` when eval loss improved."""
        from safetensors.torch import save_file

        from engine import model as models

        if self.run_dir is None:
            return
        folder = self.run_dir / "checkpoints"
        info = {"eval_loss": eval_loss, "model": self.config.model}
        weights = models.state_dict_for_transfer(self.model)
        checkpoints.save(folder, "last", server_round,
                         lambda tmp: save_file(weights, tmp / checkpoints.WEIGHTS_FILE), info)
        if not improved:
            return

        def write_pretrained(tmp: Path) -> None:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)

        checkpoints.save(folder, "best", server_round, write_pretrained, info)
        self._publish(ev.CHECKPOINT_SAVED, round=server_round, kind="best", eval_loss=eval_loss,
                      path="checkpoints/best")

    def _read_commands(self) -> None:
        if self.publisher is None:
            return
        for command in self.publisher.commands():
            if command.get("command") == "stop":
                self.stop_requested = True
            elif command.get("command") == "client_of_node":
                self.client_of_node[command["node_id"]] = command["client"]
            elif command.get("command") == "early_stopping":
                for key in ("enabled", "patience"):
                    if command.get(key) is not None:
                        self.early_stopping[key] = command[key]
                self._publish(ev.EARLY_STOPPING_CHANGED, **self.early_stopping)

    def _publish(self, type_: str, **fields) -> None:
        logging.getLogger("fedtui").info("%s %s", type_, fields)
        if self.publisher:
            self.publisher.publish(type_, **fields)


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def fingerprint(arrays: ArrayRecord) -> str:
    """SHA-256 of a model's weights, to tell one global model from another in the record."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(arrays[name].data)
    return digest.hexdigest()


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("flwr", "fedtui"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
