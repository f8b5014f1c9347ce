"""The ServerApp's run: rounds of federated training with central evaluation, stop checks and
events.

The strategy (Flower's, by config name: engine.app.server.strategy) decides what the clients
are sent, to the clients drawn for the round (engine.app.server.sampling); `FederatedRun` owns
the round loop around it, because Flower's `Strategy.start()` has no hook to stop between
rounds, because replies are folded in one at a time as they arrive where the strategy allows
(engine.app.server.aggregate_round), and because a crashed client must cost its reply, not
the round (engine.app.server.roster): the round counts when `min_clients` replied. After each
round's central evaluation: the clients' own (`client_eval`, engine.app.server.client_eval),
then what the model writes (engine.app.server.model_writes). How the model travels is
engine.app.server.model_delivery's; stop, hold and live changes come between rounds
(engine.app.server.between_rounds); every round's model and strategy state is saved
(engine.app.server.model_store), so a run goes on, or a fork starts, from any round.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flwr.serverapp import Grid

from engine.app import transfer
from engine.app.server.aggregate_round import aggregate_round, server_step
from engine.app.server.between_rounds import ServerSteering, clients_round_config
from engine.app.server.client_eval import evaluate_on_clients
from engine.app.server.joined_clients import clients_joined, identify, say_goodbye
from engine.app.server.model_delivery import ModelDelivery
from engine.app.server.model_store import ModelStore
from engine.app.server.model_writes import ModelWrites
from engine.app.server.replies import (
    CLIENT_RECONNECT_WAIT_S,
    RoundReplies,
    clients_for_round,
    wait_for_clients,
)
from engine.app.server.roster import LiveGrid, Roster
from engine.app.server.sampling import discover_clients, round_nodes
from engine.app.server.scaffold import ControlVariates
from engine.app.server.strategy import build_strategy, update_strategy
from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.status import Status
from engine.ml import data, model as models, task
from engine.ml.early_stopping import EarlyStoppingTracker
from engine.net.channel import EventPublisher


class FederatedRun:
    def __init__(
        self,
        config: RunConfig,
        grid: Grid,
        publisher: EventPublisher | None,
        run_dir: Path | None = None,
        resume: dict | None = None,
        join_timeout_s: float | None = None,
        start: dict | None = None,
    ) -> None:
        """`resume`: where a run goes on from (engine.run.resume); `start`: the checkpoint a
        fork's round 0 is (its `path` and `round` in the parent); `join_timeout_s`: the
        clients join from other hosts (`fedtui serve`), within it."""
        self.config = config
        self.join_timeout_s = join_timeout_s
        self.roster = Roster(config.num_clients)
        self.grid = LiveGrid(grid, self.roster)
        self.publisher = publisher
        self.run_dir = run_dir
        self.resume = resume
        self.start = start
        self.strategy = build_strategy(config)
        self.device = models.resolve_device(config)
        self.precision = models.resolve_precision(config, self.device)
        self.model = models.load_model(config).to(self.device)
        self.weights = models.trainable_weights(self.model)  # the global model, updated in place
        self.momentum = server_step(config)
        self.variates = ControlVariates.for_run(config, self.weights)
        tokenizer = data.load_tokenizer(config)
        self.store = ModelStore(
            run_dir / "checkpoints" if run_dir else None,
            self.model,
            tokenizer,
            self.strategy,
            self.momentum,
            self.variates,
        )
        self.writes = ModelWrites(
            config, self.model, tokenizer, self.device, self.precision, self._publish
        )
        self.eval_samples = data.load_eval_samples(config)
        self.partition_sizes = data.partition_sizes(config)
        self.steering = ServerSteering(
            config, publisher, self.roster, self._publish, (resume or {}).get("round", 0) + 1
        )
        resumed = resume or {}
        self.early_stopping = EarlyStoppingTracker(
            config.early_stopping,
            config.rounds,
            best_round=resumed.get("best_round"),
            best_eval_loss=resumed.get("best_eval_loss"),
            rounds_without_improvement=resumed.get("rounds_without_improvement") or 0,
            best_pass_at_1=resumed.get("best_pass_at_1"),
        )
        self.train_loss: float | None = None  # of the round being finished
        self.round_nodes: list[int] | None = None  # who trained it (None: round 0, everyone)
        self.bytes_sent = self.bytes_received = 0
        self.variate_bytes: dict[str, int] = {}  # SCAFFOLD's share of them
        # In Flower's messages until run() has opened the shared folder, if there is one.
        self.delivery = ModelDelivery(self.model, config.transfer_dtype)

    def run(self) -> None:
        self._publish(
            ev.MODEL_INFO, **models.model_info(self.model, self.config, self.device, self.precision)
        )
        local = self.config.backend == "deployment" and self.join_timeout_s is None
        self.delivery = ModelDelivery.open(
            self.config,
            self.run_dir.name if self.run_dir else "run",
            self.model,
            local,
            self._publish,
        )
        with self.delivery:
            self._run_rounds()

    def _run_rounds(self) -> None:
        if self.config.backend == "simulation":  # virtual nodes: only they know their client
            discover_clients(self.grid, self.roster, timeout_s=self.config.round_timeout)
        if self.join_timeout_s is not None:
            why_not = clients_joined(
                self.grid,
                self.roster,
                timeout_s=self.join_timeout_s,
                required=self.config.required_replies,
                publish=self._publish,
                read_commands=self.steering.read,
                stop_requested=lambda: self.steering.stop_requested,
            )
            if why_not:
                self._round_failed(0, why_not)
                self._finish_run(
                    Status.FAILED, completed=self.resume["round"] if self.resume else 0
                )
                return
        if self.resume is None:
            if self.start is not None:
                self.store.restore(Path(self.start["path"]), self.start["round"])
            if self.config.client_eval:  # round 0 evaluates on every client: let them come
                wait_for_clients(
                    self.grid,
                    self.roster,
                    ceiling_s=CLIENT_RECONNECT_WAIT_S,
                    read_commands=self.steering.read,
                )
            self._finish_round(0, started=time.monotonic())
            first_round = 1
        else:
            if self.run_dir is None:
                raise RuntimeError("cannot resume: no run folder to resume from")
            self.store.restore(self.run_dir / "checkpoints" / "last", self.resume["round"])
            first_round = self.resume["round"] + 1
        self._finish_run(*self._train_rounds(first_round))

    def _train_rounds(self, first_round: int) -> tuple[str, int]:
        """Round after round until the last (`rounds` may change on the way), a stop, early
        stopping or a failure: the run's status and the rounds it completed."""
        server_round = first_round
        while server_round <= self.config.rounds:
            self.steering.read()
            self.steering.hold(after_round=server_round - 1)
            if self.steering.stop_requested:
                return Status.STOPPED, server_round - 1
            self._take_config(self.steering.begin_round(server_round))
            if server_round > self.config.rounds:  # shortened while the run was held
                break
            started = time.monotonic()
            if not self._train(server_round):
                return Status.FAILED, server_round - 1
            if self._finish_round(server_round, started):
                return Status.STOPPED, server_round
            server_round += 1
        return Status.COMPLETED, server_round - 1

    def _take_config(self, config: RunConfig) -> None:
        """The config a round begins with, live changes included, into what uses it."""
        if config is self.config:
            return
        self.config = config
        update_strategy(self.strategy, config)
        if self.momentum is not None:
            self.momentum.configure(config)
        self.early_stopping.policy = config.early_stopping
        self.early_stopping.last_round = config.rounds

    def _finish_run(self, status: str, completed: int) -> None:
        if self.join_timeout_s is not None:  # each `fedtui join` exits with the run
            say_goodbye(self.grid, self.roster, status)
        self._publish(
            ev.RUN_FINISHED,
            status=status,
            rounds_completed=completed,
            best_round=self.early_stopping.best_round,
            best_eval_loss=self.early_stopping.best_eval_loss,
        )

    def _train(self, server_round: int) -> bool:
        """One round of training; the model then holds the new global weights. False when fewer
        than `min_clients` clients are there or returned a model: the run fails."""
        required = self.config.required_replies
        if self.join_timeout_s is not None:  # a client host that joined (again) since
            identify(self.grid, self.roster, self._publish)
        live = clients_for_round(
            self.grid,
            self.roster,
            required=required,
            round_timeout=self.config.round_timeout,
            read_commands=self.steering.read,
        )
        if live < required:
            return self._round_failed(
                server_round,
                f"round {server_round}: {live} client(s) connected, min_clients needs {required}"
                f" (gone: {', '.join(map(str, sorted(self.roster.gone))) or 'none'})",
            )
        sampled = round_nodes(
            self.grid,
            self.roster,
            self.config.clients_per_round,
            self.config.seed,
            server_round,
            self.steering.read,
            every_client_known=self.variates is not None,  # each is sent its own variates
        )
        self.round_nodes = [node for _, node in sampled]
        arrays, train_config, model_bytes = self.delivery.outgoing(server_round, "train")
        train_config.update(clients_round_config(self.config, server_round))
        with self.grid.only(node for _, node in sampled):
            messages = list(
                self.strategy.configure_train(server_round, arrays, train_config, self.grid)
            )
        del arrays  # the messages hold it until they are pushed
        self.bytes_sent = model_bytes * len(messages)
        if self.variates is not None:
            clients = {node: client for client, node in sampled if client is not None}
            messages, variate_bytes = self.variates.with_corrections(
                messages, clients, self.delivery.train_file(server_round)
            )
            self.bytes_sent += variate_bytes
            self.variate_bytes = {"variate_bytes_sent": variate_bytes}
        self._publish(
            ev.ROUND_STARTED,
            round=server_round,
            clients=len(messages),
            sampled=sorted(client for client, _ in sampled if client is not None),
            start_model_sha256=transfer.fingerprint(self.weights),
            learning_rate=train_config["learning-rate"],
        )
        round_replies = RoundReplies(
            self.grid,
            self.roster,
            publish=self._publish,
            read_commands=self.steering.read,
            timeout=self.config.round_timeout,
            rules=self.delivery.reply_rules(
                server_round, self.partition_sizes, variates=self.variates is not None
            ),
        )
        replies = round_replies.collect(server_round, messages)
        try:
            result = aggregate_round(
                self.strategy,
                self.config,
                server_round,
                replies,
                self.model,
                self.momentum,
                self.variates,
            )
        finally:
            self.delivery.round_over()
        shortfall = round_replies.shortfall(server_round, required)
        if result is None or shortfall:
            return self._round_failed(
                server_round, shortfall or f"round {server_round}: no client returned a model"
            )
        self.train_loss, self.bytes_received = result.train_loss, result.bytes_received
        if self.variates is not None:
            self.variate_bytes["variate_bytes_received"] = self.variates.bytes_received
        return True

    def _round_failed(self, server_round: int, message: str) -> bool:
        self._publish(ev.ERROR, source="serverapp", round=server_round, message=message)
        return False

    def _finish_round(self, server_round: int, started: float) -> bool:
        """Central evaluation and the round's record; True when early stopping ends the run."""
        eval_started = time.monotonic()
        eval_loss = task.evaluate(
            self.model,
            self.eval_samples,
            batch_size=self.config.eval_batch_size,
            device=self.device,
            precision=self.precision,
        )
        eval_seconds = time.monotonic() - eval_started
        if self.config.client_eval:
            arrays, model_config, _ = self.delivery.outgoing(server_round, "evaluate")
            try:
                evaluate_on_clients(
                    self.grid,
                    self.roster,
                    self.grid.get_node_ids() if self.round_nodes is None else self.round_nodes,
                    (arrays, model_config),
                    server_round=server_round,
                    timeout=self.config.round_timeout,
                    publish=self._publish,
                )
            finally:
                self.delivery.round_over()
        pass_at_1 = self.writes.after_round(server_round, self.config)
        improved = self.early_stopping.record(server_round, eval_loss, pass_at_1)
        best_round = self.early_stopping.best_round
        keep = None if self.config.keep_checkpoints == "all" else [server_round, best_round or 0]
        self.store.save(server_round, eval_loss, improved, keep)
        if improved and self.run_dir is not None:
            self._publish(
                ev.CHECKPOINT_SAVED,
                round=server_round,
                kind="best",
                eval_loss=eval_loss,
                path="checkpoints/best",
            )
        self._publish(
            ev.ROUND_DONE,
            round=server_round,
            eval_loss=eval_loss,
            train_loss=self.train_loss,
            seconds=time.monotonic() - started,
            eval_seconds=eval_seconds,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            **self.variate_bytes,
            model_sha256=transfer.fingerprint(self.weights),
            best_round=self.early_stopping.best_round,
            rounds_without_improvement=self.early_stopping.rounds_without_improvement,
        )
        return self._early_stop(server_round)

    def _early_stop(self, server_round: int) -> bool:
        early_stopping = self.early_stopping
        if not early_stopping.should_stop(server_round):
            return False
        self._publish(
            ev.EARLY_STOP,
            round=server_round,
            best_round=early_stopping.best_round,
            best_eval_loss=early_stopping.best_eval_loss,
            patience=early_stopping.policy.patience,
            reason=early_stopping.reason(),
        )
        return True

    def _publish(self, type_: str, **fields) -> None:
        logging.getLogger("fedtui").info("%s %s", type_, fields)
        if self.publisher:
            self.publisher.publish(type_, **fields)
