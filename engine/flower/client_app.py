"""The ClientApp: train the global model on this client's partition with FedProx's proximal term.

Flower starts one process per message, so each round this module loads the model, the client's
partition (cached by the controller's `prepare`), trains and replies. Everything the UI needs
about the round travels back in the reply's metrics, so a client on another host shows up too;
live step progress goes over the fedtui channel where there is one.
"""

from __future__ import annotations

import gc
import os
import time

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from engine import events as ev
from engine.channel import EventPublisher
from engine.flower.run_config import config_from_run_config

app = ClientApp()

PROGRESS_INTERVAL_S = 0.5


@app.train()
def train(msg: Message, context: Context) -> Message:
    import psutil
    import torch

    from engine import data, model as models
    from engine.flower import task

    config = config_from_run_config(context.run_config)
    client = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])
    mu = float(msg.content["config"].get("proximal-mu", 0.0))
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
            publisher.publish(ev.CLIENT_PROGRESS, round=server_round, client=client, step=step,
                              steps_total=steps_total, loss=loss, vram_bytes=vram)

    model = models.build_model(config, pretrained=False)
    models.load_transferred(model, msg.content["arrays"].to_torch_state_dict())
    samples = data.load_client_samples(config, client)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = task.train(model, samples, epochs=config.local_epochs,
                        batch_size=config.train_batch_size, learning_rate=config.learning_rate,
                        mu=mu, device=device, seed=(config.seed * 1_000 + client) * 1_000 + server_round,
                        on_step=on_step)
    metrics = {
        "train-loss": result.train_loss,
        "num-examples": result.examples,
        "partition-id": client,
        "steps": result.steps,
        "train-seconds": result.seconds,
        "peak-rss-bytes": psutil.Process().memory_info().rss,
    }
    if device.type == "cuda":
        metrics["peak-vram-bytes"] = torch.cuda.max_memory_reserved(device)
    reply = RecordDict({"arrays": ArrayRecord(models.state_dict_for_transfer(model)),
                        "metrics": MetricRecord(metrics)})
    del model  # the seed's lesson: free what we can before Flower serializes the reply
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if publisher:
        publisher.close()
    return Message(content=reply, reply_to=msg)


def threads_per_client(configured: int, num_clients: int) -> int:
    """Share the cores: N clients with default threads each oversubscribe them badly."""
    if configured > 0:
        return configured
    return max(1, (os.cpu_count() or 1) // num_clients)
