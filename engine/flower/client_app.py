"""The ClientApp: train the global model on this client's partition with FedProx's proximal term.

Flower starts one process per message, so each round this module loads the model, the client's
partition (cached by the controller's `prepare`), trains and replies. Everything the UI needs
about the round travels back in the reply's metrics, so a client on another host shows up too;
live step progress goes over the fedtui channel where there is one.
"""

from __future__ import annotations

import gc
import resource
import time

import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from engine import data, events as ev, model as models
from engine.channel import EventPublisher
from engine.flower import task, transfer
from engine.flower.records import number
from engine.flower.run_config import config_from_run_config
from engine.process_env import threads_per_client

app = ClientApp()

PROGRESS_INTERVAL_S = 0.5


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = config_from_run_config(context.run_config)
    client = int(context.node_config["partition-id"])
    round_config = msg.content.config_records["config"]
    server_round = int(number(round_config, "server-round"))
    mu = float(number(round_config, "proximal-mu", default=0.0))
    torch.set_num_threads(threads_per_client(config.threads_per_client, config.num_clients))
    device = models.resolve_device(config)

    publisher = EventPublisher.from_env(role="client", client=client, node_id=context.node_id)
    last_sent = 0.0

    def on_step(step: int, steps_total: int, loss: float) -> None:
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
                loss=loss,
                vram_bytes=vram,
            )

    model = models.load_model(config)
    # frees the received bytes as it goes
    transfer.load_arrays(model, msg.content.array_records["arrays"])
    samples = data.load_client_samples(config, client)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    precision = task.Precision(
        models.resolve_precision(config, device), config.gradient_checkpointing
    )
    result = task.train(
        model,
        samples,
        epochs=config.local_epochs,
        batch_size=config.train_batch_size,
        learning_rate=config.learning_rate,
        mu=mu,
        device=device,
        seed=(config.seed * 1_000 + client) * 1_000 + server_round,
        grad_accum_steps=config.grad_accum_steps,
        precision=precision,
        on_step=on_step,
    )
    gc.collect()  # the optimizer's state is gone: free it before the reply is built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    arrays = transfer.to_arrays(model, config.transfer_dtype)
    del model
    metrics = MetricRecord(
        {
            "train-loss": result.train_loss,
            "num-examples": result.examples,
            "partition-id": client,
            "steps": result.steps,
            "train-seconds": result.seconds,
            "peak-rss-bytes": peak_rss_bytes(),
        }
    )
    if device.type == "cuda":
        metrics["peak-vram-bytes"] = torch.cuda.max_memory_reserved(device)
    reply = RecordDict({"arrays": arrays, "metrics": metrics})
    if publisher:
        publisher.close()
    return Message(content=reply, reply_to=msg)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (the kernel's high-water mark)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux counts KiB
