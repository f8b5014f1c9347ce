"""The ClientApp: train the global model on this client's partition with FedProx's proximal term.

Under fedtui the app runs in its client's long-lived worker (engine.flower.worker), so the model
and the client's partition are built once and kept in `_warm` for the rounds that follow: each
round copies the received global weights into the kept model and trains it with a fresh
optimizer. Started by Flower's own `flwr-clientapp` (one process per message), the cache simply
lives for one round. Everything the UI needs about the round travels back in the reply's
metrics, so a client on another host shows up too; live step progress goes over the fedtui
channel where there is one.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from engine.app import shared_weights, transfer
from engine.app.flower_records import number
from engine.app.run_config import config_from_run_config
from engine.core import events as ev
from engine.core.config import RunConfig
from engine.core.process_env import threads_per_client
from engine.ml import control_variates, data, model as models, out_of_memory, task
from engine.ml.samples import Samples
from engine.net.channel import EventPublisher

app = ClientApp()

PROGRESS_INTERVAL_S = 0.5
# What `fedtui join` puts in its SuperNode's node config besides the partition id.
JOIN_IDENTITY = ("address", "host")


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = node_run_config(context)
    client = int(context.node_config["partition-id"])
    round_config = msg.content.config_records["config"]
    server_round = int(number(round_config, "server-round"))
    mu = float(number(round_config, "proximal-mu", default=0.0))
    # what may change between rounds comes with the round (engine.app.server.between_rounds)
    epochs = int(number(round_config, "local-epochs", default=config.local_epochs))
    local_steps = int(number(round_config, "local-steps", default=config.local_steps))
    learning_rate = float(number(round_config, "learning-rate", default=config.learning_rate))
    evaluated = bool(round_config.get("client-eval", config.client_eval))
    torch.set_num_threads(threads_per_client(config))
    device = models.resolve_device(config)

    publisher = EventPublisher.from_env(role="client", client=client, node_id=context.node_id)
    last_sent = 0.0

    def on_step(step: int, steps_total: int, loss: Callable[[], float]) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if publisher and (now - last_sent >= PROGRESS_INTERVAL_S or step in (1, steps_total)):
            last_sent = now
            vram = torch.cuda.memory_reserved(device) if device.type == "cuda" else None
            publisher.publish(
                ev.CLIENT_PROGRESS,
                round=server_round,
                client=client,
                step=step,
                steps_total=steps_total,
                loss=loss(),
                vram_bytes=vram,
            )

    with out_of_memory.named_on(device):
        model, samples = warm_state(config, client)
        samples, _ = samples.held_out(evaluated)
        global_file = shared_weights.named_file(round_config)
        # a record's bytes are freed as they are copied in
        transfer.load_arrays(model, global_file or msg.content.array_records["arrays"])
        correction = _correction(msg, model, device)
        start = (
            [w.detach().clone() for w in models.trainable_weights(model).values()]
            if correction
            else []
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        precision = task.Precision(
            models.resolve_precision(config, device), config.gradient_checkpointing
        )
        result = task.train(
            model,
            samples,
            epochs=epochs,
            local_steps=local_steps,
            batch_size=config.train_batch_size,
            learning_rate=learning_rate,
            mu=mu,
            device=device,
            seed=task.local_seed(config.seed, client, server_round),
            grad_accum_steps=config.grad_accum_steps,
            precision=precision,
            on_step=on_step,
            correction=correction,
        )
        variate = (
            control_variates.new_control_variate(
                start,
                list(models.trainable_weights(model).values()),
                correction,
                result.optimizer_steps,
                learning_rate,
            )
            if correction and result.optimizer_steps
            else None
        )
        del start, correction
    gc.collect()  # the optimizer's state is gone: free it before the reply is built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    metrics = MetricRecord(
        {
            "train-loss": result.train_loss,
            "num-examples": result.examples,
            "partition-id": client,
            "steps": result.steps,
            "train-seconds": result.seconds,
            "train-tokens": result.tokens,
        }
    )
    if config.backend == "deployment":  # a Ray actor's peak is of every client it served
        metrics["peak-rss-bytes"] = peak_rss_bytes()
    if device.type == "cuda":
        metrics["peak-vram-bytes"] = torch.cuda.max_memory_reserved(device)
    reply = RecordDict({"metrics": metrics})
    if global_file:  # the server is on this machine: the weights go beside its own
        trained = shared_weights.reply_file(global_file, client)
        shared_weights.write(trained, models.trainable_weights(model), config.transfer_dtype)
        reply[shared_weights.REPLY_RECORD] = shared_weights.naming(trained)
    else:
        reply["arrays"] = transfer.to_arrays(model, config.transfer_dtype)
    if variate is not None:
        variates = dict(zip(models.trainable_weights(model), variate, strict=True))
        if global_file:
            path = shared_weights.variate_file(shared_weights.reply_file(global_file, client))
            shared_weights.write(path, variates, config.transfer_dtype)
            reply[transfer.VARIATE_RECORD] = shared_weights.naming(path)
        else:
            reply[transfer.VARIATE_RECORD] = transfer.tensors_to_arrays(
                variates, config.transfer_dtype
            )
    if publisher:
        publisher.close()
    return Message(content=reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The round's global model on this client's held-out samples (client_eval)."""
    config = node_run_config(context)
    client = int(context.node_config["partition-id"])
    torch.set_num_threads(threads_per_client(config))
    device = models.resolve_device(config)
    with out_of_memory.named_on(device):
        model, samples = warm_state(config, client)
        _, held_out = samples.held_out(evaluated=True)
        shared_file = shared_weights.named_file(msg.content.config_records["config"])
        transfer.load_arrays(model, shared_file or msg.content.array_records["arrays"])
        eval_loss = task.evaluate(
            model,
            held_out,
            batch_size=config.eval_batch_size,
            device=device,
            precision=models.resolve_precision(config, device),
        )
    metrics = MetricRecord(
        {"eval-loss": eval_loss, "num-examples": len(held_out), "partition-id": client}
    )
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


@app.query("partition")
def partition(msg: Message, context: Context) -> Message:
    """Which client this node is: in Flower's simulation runtime, or on another host, only the node
    knows; a node `fedtui join` started also says where it is (engine.app.server.joined_clients)."""
    client = int(context.node_config["partition-id"])
    identity = ConfigRecord(
        {key: str(context.node_config[key]) for key in JOIN_IDENTITY if key in context.node_config}
    )
    content = RecordDict({"metrics": MetricRecord({"partition-id": client}), "identity": identity})
    return Message(content, reply_to=msg)


@app.query("finished")
def finished(msg: Message, context: Context) -> Message:
    """The run is over: `fedtui join` hears it on its own channel and exits."""
    status = str(msg.content.config_records["run"]["status"])
    publisher = EventPublisher.from_env(role="client", client=context.node_config["partition-id"])
    if publisher:
        publisher.publish(ev.RUN_FINISHED, status=status)
        publisher.close()
    return Message(RecordDict(), reply_to=msg)


def _correction(
    msg: Message, model: torch.nn.Module, device: torch.device
) -> list[torch.Tensor] | None:
    """SCAFFOLD's c - c_i for each trainable tensor, in their order, when the message carries
    it, or names its shared file (engine.ml.control_variates)."""
    source = transfer.carried(msg.content, transfer.CORRECTION_RECORD)
    if source is None:
        return None
    targets = models.trainable_weights(model)
    names, tensors = transfer.weights_in(source)
    models.check_names(targets, names)
    received = {name: tensor.to(device, torch.float32, copy=True) for name, tensor in tensors}
    for name, tensor in received.items():
        if tensor.shape != targets[name].shape:
            raise ValueError(f"the control variates' {name} does not fit the model")
    return [received[name] for name in targets]


def node_run_config(context: Context) -> RunConfig:
    """The run's config, with the device a client host chose (`fedtui join --device`)."""
    config = config_from_run_config(context.run_config)
    device = context.node_config.get("device")
    return dataclasses.replace(config, device=str(device)) if device else config


@dataclass
class _WarmState:
    key: str
    model: torch.nn.Module
    samples: dict[int, Samples]


_warm: _WarmState | None = None


def warm_state(config: RunConfig, client: int) -> tuple[torch.nn.Module, Samples]:
    """The model, built once for a config, and each client's samples, loaded once: every
    trained weight is overwritten by the global model each round, and the rest (frozen base
    weights under LoRA) depends on nothing else, so one model serves every client a process
    trains (a worker has one; a Ray actor of the simulation runtime takes turns with many).
    One config at a time: a new run replaces it."""
    global _warm
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    if _warm is None or _warm.key != key:
        _warm = None  # let the old model go before the new one is built
        _warm = _WarmState(key, models.load_model(config), {})
    if client not in _warm.samples:
        _warm.samples[client] = data.load_client_samples(config, client)
    return _warm.model, _warm.samples[client]


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (the kernel's high-water mark)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux counts KiB
