"""Events in words: one plain sentence per event type (numbers as engine.core.units writes them).

Every view that tells a run as text (the headless printer, the TUI's event log) says what
`describe` says; views choose which events to show and how to style them, never the words. A new
event type in `engine.core.events` needs a sentence in `SENTENCES` (a test checks that it has one).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.core import events as ev
from engine.core.strategies import describe_strategy
from engine.core.text import printable
from engine.core.units import byte_size, duration, loss, parameter_count


def describe(event: ev.Event) -> str:
    """The event's sentence: one line, nothing in it a terminal would obey."""
    return printable(SENTENCES[event["type"]](event))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _process(event: ev.Event) -> str:
    client = event.get("client")
    return event["role"] if client is None else f"{event['role']} {client}"


def _run_started(event: ev.Event) -> str:
    config = event["config"]
    sentence = (
        f"run {event['run_id']} started: {config['model']} on {config['dataset']}, "
        f"{describe_strategy(config)}, {config['num_clients']} clients x "
        f"{config['samples_per_client']} samples, {_plural(config['rounds'], 'round')}"
    )
    if event.get("imported_from"):
        sentence += f" (imported from {event['imported_from']})"
    if event.get("forked_from"):
        parent = event["forked_from"]
        sentence += f", forked from {parent['run']} after its round {parent['round']}"
    return sentence


def _run_resumed(event: ev.Event) -> str:
    return f"run resumed after round {event['from_round']}, to round {event['config']['rounds']}"


def partition_spread(clients: list[dict]) -> str:
    """ "1-3 sources a client (the largest 70-100% of its samples)": how non-IID a split is."""
    sources = [c["sources"] for c in clients]
    shares = [c["largest_source_share"] for c in clients if c["largest_source_share"] is not None]

    def span(values: list, unit: str = "") -> str:
        low, high = min(values), max(values)
        return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"

    text = f"{span(sources)} sources a client"
    if shares:
        text += f" (the largest {span([round(100 * s) for s in shares], '%')} of its samples)"
    return text


def _client_eval(event: ev.Event) -> str:
    examples = event.get("examples")
    on = f" on its {_plural(examples, 'held-out sample')}" if examples else ""
    return (
        f"client {event['client']}, round {event['round']}: eval loss "
        f"{loss(event['eval_loss'])}{on}"
    )


def _partition_summary(event: ev.Event) -> str:
    clients = event["clients"]
    samples = sorted({c["samples"] for c in clients})
    counts = f"{samples[0]}" if len(samples) == 1 else f"{samples[0]}-{samples[-1]}"
    sentence = (
        f"data: {event['partition']} partition, {counts} samples a client, "
        f"{partition_spread(clients)}"
    )
    cut = sum(c.get("truncated") or 0 for c in clients)
    if cut:
        lost = sum(c.get("completion_cut") or 0 for c in clients)
        sentence += f"; {cut} cut at seq_len ({lost} lost their whole completion)"
    return sentence


def _model_info(event: ev.Event) -> str:
    total, trainable = event["total_params"], event["trainable_params"]
    share = f" ({trainable / total:.1%})" if total else ""
    parts = [
        f"{parameter_count(total)} parameters, {parameter_count(trainable)} trainable{share}",
        f"precision {event['precision']}",
    ]
    if event.get("transfer_dtype"):
        parts.append(f"sent as {event['transfer_dtype']}")
    if event.get("device"):
        parts.append(f"on {event['device']}")
    if event.get("lora_r") is not None:
        parts.append(f"LoRA r={event['lora_r']}")
    if event.get("gradient_checkpointing"):
        parts.append("gradient checkpointing")
    return f"model {event['model']}: " + ", ".join(parts)


def _process_exited(event: ev.Event) -> str:
    code = event.get("returncode")
    status = "" if code is None else f", code {code}"
    return f"{_process(event)} exited (pid {event['pid']}{status})"


def _round_started(event: ev.Event) -> str:
    clients, sampled = event.get("clients"), event.get("sampled")
    which = f" ({', '.join(map(str, sampled))})" if sampled else ""
    sentence = f"round {event['round']} started" + (
        "" if clients is None else f" with {_plural(clients, 'client')}{which}"
    )
    if event.get("learning_rate") is not None:
        sentence += f", learning rate {event['learning_rate']:.3g}"
    return sentence


def _code_eval(event: ev.Event) -> str:
    pass_at = event["pass_at"]
    scores = ", ".join(f"pass@{k} {_share(value)}" for k, value in pass_at.items())
    problems = event.get("problems")
    on = "" if problems is None else f" on {_plural(problems, 'problem')}"
    sentence = f"round {event['round']} code eval: {scores or 'no score'}{on}"
    if event.get("generation_seconds") is not None:
        sentence += (
            f" (writing {event['generation_seconds']:.1f} s, "
            f"testing {event.get('execution_seconds') or 0:.1f} s)"
        )
    return sentence


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _generated(event: ev.Event) -> str:
    return (
        f"round {event['round']}: the global model completed "
        f"{_plural(len(event['samples']), 'prompt')}"
    )


def _client_progress(event: ev.Event) -> str:
    sentence = (
        f"client {event['client']}, round {event['round']}: step {event['step']}/"
        f"{event['steps_total']}"
    )
    return sentence + ("" if event.get("loss") is None else f", loss {loss(event['loss'])}")


def _client_round_done(event: ev.Event) -> str:
    return (
        f"client {event['client']} finished round {event['round']}: train loss "
        f"{loss(event['train_loss'])} on {event['examples']} examples"
    )


def _round_done(event: ev.Event) -> str:
    parts = []
    if event.get("train_loss") is not None:
        parts.append(f"train loss {loss(event['train_loss'])}")
    if event["eval_loss"] is not None:
        parts.append(f"eval loss {loss(event['eval_loss'])}")
    if event.get("seconds") is not None:  # rounds are compared to the tenth: seconds, not a clock
        parts.append(f"{event['seconds']:.1f} s")
    return f"round {event['round']} done" + (": " + ", ".join(parts) if parts else "")


def _checkpoint_saved(event: ev.Event) -> str:
    measured = "" if event.get("eval_loss") is None else f", eval loss {loss(event['eval_loss'])}"
    return (
        f"saved the {event['kind']} global model (round {event['round']}{measured}) "
        f"to {event['path']}"
    )


def _early_stopping_changed(event: ev.Event) -> str:
    if not event["enabled"]:
        return "early stopping off"
    min_delta = event.get("min_delta")
    return f"early stopping on, patience {event['patience']}" + (
        "" if min_delta is None else f", min delta {min_delta:g}"
    )


def _config_changed(event: ev.Event) -> str:
    source = f" ({event['source']})" if event.get("source") else ""
    return (
        f"{event['key']} changed from {setting(event['old'])} to {setting(event['new'])}, "
        f"from round {event['round']} on{source}"
    )


def setting(value: object) -> str:
    """A config value as the user types it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _continued(event: ev.Event) -> str:
    held = f" after {duration(event['seconds'])} held" if event.get("seconds") is not None else ""
    return f"continued{held}: round {event['round'] + 1} starts"


def _gpu_sample(event: ev.Event) -> str:
    devices = [
        f"GPU {d['index']} {byte_size(d.get('memory_used'))} of "
        f"{byte_size(d.get('memory_total'))}" + (" (lost)" if d.get("lost") else "")
        for d in event["devices"]
    ]
    if event.get("unavailable"):
        devices.append(f"no GPU figures ({event['unavailable']})")
    clients = [
        f"client {key} "
        + (
            f"{byte_size(sample['vram_bytes'])} VRAM"
            if sample.get("vram_bytes") is not None
            else f"{byte_size(sample.get('rss_bytes'))} host RSS"
        )
        for key, sample in event["clients"].items()
    ]
    return "memory: " + "; ".join(", ".join(part) for part in (devices, clients) if part)


def _stop_requested(event: ev.Event) -> str:
    source = event.get("source")
    return (
        f"stop requested{'' if source is None else f' ({source})'}: the run ends after the "
        f"current round"
    )


def _early_stop(event: ev.Event) -> str:
    reason = f": {event['reason']}" if event.get("reason") else ""
    return (
        f"early stop after round {event['round']}{reason}; best round {event['best_round']}, "
        f"eval loss {loss(event['best_eval_loss'])}"
    )


def _run_finished(event: ev.Event) -> str:
    parts = []
    if event.get("rounds_completed") is not None:
        parts.append(_plural(event["rounds_completed"], "round"))
    if event.get("best_round") is not None:
        parts.append(
            f"best eval loss {loss(event.get('best_eval_loss'))} at round {event['best_round']}"
        )
    if event.get("seconds") is not None:
        parts.append(f"wall time {duration(event['seconds'])}")
    return f"run {event['status']}" + (": " + ", ".join(parts) if parts else "")


def crash_cause(event: ev.Event, pid: bool = False) -> str:
    """What died in a `client_crashed` event: "worker (pid 7) exited with code -9 in round 2"."""
    code = event.get("returncode")
    how = f"exited with code {code}" if code is not None else "died"
    during = f" in round {event['round']}" if event.get("round") is not None else ""
    process = f"{event['role']} (pid {event['pid']})" if pid else event["role"]
    return f"{process} {how}{during}"


def _client_crashed(event: ev.Event) -> str:
    then = "restarting it" if event["restarting"] else "not restarting it"
    return f"client {event['client']} crashed: {crash_cause(event, pid=True)}; {then}"


def _waiting_for_clients(event: ev.Event) -> str:
    joined, missing = event["joined"], event["missing"]
    left = f", {duration(event['seconds_left'])} left" if event.get("seconds_left") else ""
    return (
        f"waiting for clients to join: {len(joined)} of {len(joined) + len(missing)} joined "
        f"(missing: {', '.join(map(str, missing))}){left}"
    )


def _client_joined(event: ev.Event) -> str:
    host = f" ({event['host']})" if event.get("host") else ""
    return (
        f"client {event['client']} joined from {event['address']}{host} as node {event['node_id']}"
    )


SENTENCES: dict[str, Callable[[ev.Event], str]] = {
    ev.RUN_STARTED: _run_started,
    ev.RUN_RESUMED: _run_resumed,
    ev.NOTICE: lambda event: event["message"],
    ev.MODEL_INFO: _model_info,
    ev.PARTITION_SUMMARY: _partition_summary,
    ev.CLIENT_EVAL: _client_eval,
    ev.PROCESS_STARTED: lambda event: f"{_process(event)} started (pid {event['pid']})",
    ev.PROCESS_EXITED: _process_exited,
    ev.ROUND_STARTED: _round_started,
    ev.CLIENT_PROGRESS: _client_progress,
    ev.CLIENT_ROUND_DONE: _client_round_done,
    ev.ROUND_DONE: _round_done,
    ev.CHECKPOINT_SAVED: _checkpoint_saved,
    ev.CODE_EVAL: _code_eval,
    ev.GENERATED: _generated,
    ev.EARLY_STOPPING_CHANGED: _early_stopping_changed,
    ev.CONFIG_CHANGED: _config_changed,
    ev.HELD: lambda event: (
        f"held after round {event['round']}: nothing trains until the run continues"
    ),
    ev.CONTINUED: _continued,
    ev.GPU_SAMPLE: _gpu_sample,
    ev.WARNING: lambda event: f"warning: {event['message']}",
    ev.STOP_REQUESTED: _stop_requested,
    ev.EARLY_STOP: _early_stop,
    ev.RUN_FINISHED: _run_finished,
    ev.ERROR: lambda event: f"error: {event['message']}",
    ev.CLIENT_CRASHED: _client_crashed,
    ev.CLIENT_RESTARTED: lambda event: (
        f"client {event['client']}: {event['role']} started again (pid {event['pid']}, "
        f"restart {event['attempt']})"
    ),
    ev.WAITING_FOR_CLIENTS: _waiting_for_clients,
    ev.CLIENT_JOINED: _client_joined,
}
