"""The ServerApp: rounds of federated training with central evaluation, stop checks and events.

The strategy (Flower's FedProx, FedAvg or FedAvgM) decides what each client gets and how replies
are aggregated; `FederatedRun` owns the round loop around it, because Flower's
`Strategy.start()` has no hook to stop between rounds, and because pulling replies one by one
lets each client's result show up the moment it arrives.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx

from engine import events as ev
from engine.channel import EventPublisher
from engine.config import RunConfig
from engine.flower.run_config import config_from_run_config

LOG_DIR_ENV = "FEDTUI_LOG_DIR"
REPLY_POLL_S = 0.2

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    _log_to_run_folder()
    config = config_from_run_config(context.run_config)
    publisher = EventPublisher.from_env(role="server")
    try:
        FederatedRun(config, grid, publisher).run()
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
    def __init__(self, config: RunConfig, grid: Grid, publisher: EventPublisher | None) -> None:
        from engine import data, model as models

        self.config = config
        self.grid = grid
        self.publisher = publisher
        self.strategy = build_strategy(config)
        self.device = models.resolve_device(config)
        self.model = models.build_model(config, pretrained=True)
        self.eval_samples = data.load_eval_samples(config)
        self.stop_requested = False
        self.client_of_node: dict[int, int] = {}
        self.best_round: int | None = None
        self.best_eval_loss = math.inf
        self.rounds_without_improvement = 0
        self.train_loss: float | None = None  # of the round being finished
        self.bytes_sent = self.bytes_received = 0

    def run(self) -> None:
        from engine import model as models

        arrays = ArrayRecord(models.state_dict_for_transfer(self.model))
        self._finish_round(0, arrays, started=time.monotonic())
        status, completed = "completed", 0
        for server_round in range(1, self.config.rounds + 1):
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

    def _train(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord | None:
        messages = list(self.strategy.configure_train(server_round, arrays, ConfigRecord(),
                                                      self.grid))
        self._publish(ev.ROUND_STARTED, round=server_round, clients=len(messages))
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
        now = time.monotonic()
        self._publish(ev.ROUND_DONE, round=server_round, eval_loss=eval_loss,
                      train_loss=self.train_loss, seconds=now - started,
                      eval_seconds=now - eval_started, bytes_sent=self.bytes_sent,
                      bytes_received=self.bytes_received)
        return self._update_early_stopping(server_round, eval_loss)

    def _update_early_stopping(self, server_round: int, eval_loss: float) -> bool:
        policy = self.config.early_stopping
        if eval_loss < self.best_eval_loss - policy.min_delta:
            self.rounds_without_improvement = 0
        else:
            self.rounds_without_improvement += 1
        if eval_loss < self.best_eval_loss:
            self.best_round, self.best_eval_loss = server_round, eval_loss
        if not policy.enabled or self.rounds_without_improvement < policy.patience:
            return False
        if server_round >= self.config.rounds:
            return False
        self._publish(ev.EARLY_STOP, round=server_round, best_round=self.best_round,
                      best_eval_loss=self.best_eval_loss, patience=policy.patience,
                      reason=f"central eval loss has not improved by more than "
                             f"{policy.min_delta:g} for {self.rounds_without_improvement} "
                             f"round(s) (patience {policy.patience})")
        return True

    def _read_commands(self) -> None:
        if self.publisher is None:
            return
        for command in self.publisher.commands():
            if command.get("command") == "stop":
                self.stop_requested = True
            elif command.get("command") == "client_of_node":
                self.client_of_node[command["node_id"]] = command["client"]

    def _publish(self, type_: str, **fields) -> None:
        logging.getLogger("fedtui").info("%s %s", type_, fields)
        if self.publisher:
            self.publisher.publish(type_, **fields)


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def _log_to_run_folder() -> None:
    folder = os.environ.get(LOG_DIR_ENV)
    if not folder:
        return
    handler = logging.FileHandler(os.path.join(folder, "serverapp.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("flwr", "fedtui"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
