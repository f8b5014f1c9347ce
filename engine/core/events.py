"""The event schema: the one contract between the engine and every UI.

A run is a stream of events, one JSON object per line of `runs/<id>/events.jsonl`. Every event
has `v` (schema version), `t` (unix seconds, stamped by the controller, the file's single
writer) and `type`; round- and client-scoped events add `round` and `client` (the client's
partition id). The ServerApp and ClientApps send events to the controller; the controller adds
its own (run and process lifecycle). Live views and replays fold the same events through
`engine.record.run_state.RunState`.

| type              | fields (besides v, t, type)                                               |
|-------------------|---------------------------------------------------------------------------|
| run_started       | run_id, config (resolved, as a table), version, [imported_from] (a run    |
|                   | rebuilt from a report's tables: it has only what the report gives),       |
|                   | [forked_from] ({run, path, round}: a fork starts from that run's global   |
|                   | model after that round, which is its own round 0)                         |
| notice            | message (a phase of the run: preparing data, starting Flower, ...)        |
| model_info        | model, total_params, trainable_params, precision (compute dtype in use),  |
|                   | transfer_dtype, device, lora_r (None: full fine-tuning),                  |
|                   | gradient_checkpointing (the ServerApp, once it has loaded the model)      |
| partition_summary | partition, clients (per client: client, samples, sources (distinct ones), |
|                   | largest_source_share, [truncated], [completion_cut] (instruction and chat |
|                   | data: samples cut at seq_len, and those that lost their whole completion))|
| process_started   | role, pid, [client], [command]                                            |
| process_exited    | role, pid, returncode (None when not our child), [client]                 |
| run_resumed       | from_round, config (a stopped run continues in the same file)             |
| round_started     | round, clients (how many were sent the model), sampled (their client ids, |
|                   | drawn with the seed when clients_per_round is set), start_model_sha256,   |
|                   | [learning_rate] (the clients', as lr_schedule sets it for the round)      |
| client_progress   | round, client, step, steps_total, loss, [vram_bytes] (torch's own count,  |
|                   | for when NVML cannot see the client's processes)                          |
| client_round_done | round, client, train_loss, examples, steps, seconds, [tokens] (real      |
|                   | tokens trained on, all epochs), [peak_rss_bytes], [peak_vram_bytes]       |
| client_eval       | round, client, eval_loss, examples (client_eval: the global model of the   |
|                   | round on the client's held-out samples)                                   |
| round_done        | round, train_loss (None at round 0), eval_loss (None only in an imported  |
|                   | run whose report lacks it), seconds, eval_seconds,                        |
|                   | bytes_sent, bytes_received (model payload bytes, server side),            |
|                   | model_sha256 (of the global model after the round), best_round,           |
|                   | rounds_without_improvement                                                |
| checkpoint_saved  | round, kind ("best" or "last"), eval_loss, path (relative to the run)     |
| code_eval         | round, pass_at ({"1": 0.25, ...}: pass@k for k up to samples_per_problem), |
|                   | benchmark, problems, samples_per_problem, passed (problems with a passing |
|                   | completion), generation_seconds, execution_seconds (after the round's eval) |
| generated         | round, samples ([{prompt, completion}]: generation_prompts, greedy),      |
|                   | seconds                                                                   |
| config_changed    | round (the first round it applies to), key (dotted), old, new, source     |
|                   | ("fedtui set", "monitor"): a live change, acknowledged by the ServerApp   |
| held              | round (held after it), source: nothing trains until `continued`           |
| continued         | round (the run was held after it), seconds (held), source                 |
| early_stopping_changed | enabled, patience, min_delta (how records before config_changed     |
|                   | told a live change of early stopping)                                     |
| gpu_sample        | devices (per GPU: index, name, memory_total, memory_used, utilization,   |
|                   | lost), clients ({"0": {rss_bytes, vram_bytes, device, source}}: source is |
|                   | "nvml", or None when NVML saw none of the client's processes),            |
|                   | unavailable (why there are no GPU figures, else None)                     |
| warning           | message, [client]  (a client passed 90% of its GPU's memory)              |
| client_crashed    | client, role, pid, returncode, [round], restarting (the controller saw   |
|                   | one of the client's processes die and will start it again, or not)       |
| client_restarted  | client, role, pid, attempt (the controller started it again: n-th time)   |
| waiting_for_clients | joined, missing (client ids), seconds_left (`fedtui serve`: the run     |
|                   | starts once every client has joined, or fails when the time is up)        |
| client_joined     | client, node_id, address, host (a client host's SuperNode, as it reported |
|                   | itself: `fedtui join` on another machine)                                 |
| stop_requested    | source ("user", "signal")                                                 |
| early_stop        | round, best_round, best_eval_loss, patience, reason                       |
| run_finished      | status (completed/stopped/aborted/failed), rounds_completed, best_round,  |
|                   | best_eval_loss, seconds                                                   |
| error             | message, [source], [client], [round]                                      |

Round 0 is the central evaluation of the initial model, before any training. A non-finite number
(a diverged loss: NaN or infinity) is recorded as null, so every line stays strict JSON.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import event_fields
from engine.core.bounded_lines import Cut, RawLine, bounded_lines
from engine.core.errors import RunFolderError
from engine.core.text import printable_fields

SCHEMA_VERSION = 1

RUN_STARTED = "run_started"
RUN_RESUMED = "run_resumed"
NOTICE = "notice"
MODEL_INFO = "model_info"
PARTITION_SUMMARY = "partition_summary"
PROCESS_STARTED = "process_started"
PROCESS_EXITED = "process_exited"
ROUND_STARTED = "round_started"
CLIENT_EVAL = "client_eval"
CLIENT_PROGRESS = "client_progress"
CLIENT_ROUND_DONE = "client_round_done"
ROUND_DONE = "round_done"
CHECKPOINT_SAVED = "checkpoint_saved"
CODE_EVAL = "code_eval"
GENERATED = "generated"
EARLY_STOPPING_CHANGED = "early_stopping_changed"
CONFIG_CHANGED = "config_changed"
HELD = "held"
CONTINUED = "continued"
GPU_SAMPLE = "gpu_sample"
WARNING = "warning"
STOP_REQUESTED = "stop_requested"
EARLY_STOP = "early_stop"
RUN_FINISHED = "run_finished"
ERROR = "error"
CLIENT_CRASHED = "client_crashed"
CLIENT_RESTARTED = "client_restarted"
WAITING_FOR_CLIENTS = "waiting_for_clients"
CLIENT_JOINED = "client_joined"

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    RUN_STARTED: ("run_id", "config"),
    RUN_RESUMED: ("from_round", "config"),
    NOTICE: ("message",),
    MODEL_INFO: ("model", "total_params", "trainable_params", "precision"),
    PARTITION_SUMMARY: ("partition", "clients"),
    PROCESS_STARTED: ("role", "pid"),
    PROCESS_EXITED: ("role", "pid"),
    ROUND_STARTED: ("round",),
    CLIENT_EVAL: ("round", "client", "eval_loss"),
    CLIENT_PROGRESS: ("round", "client", "step", "steps_total"),
    CLIENT_ROUND_DONE: ("round", "client", "train_loss", "examples"),
    ROUND_DONE: ("round", "eval_loss"),
    CHECKPOINT_SAVED: ("round", "kind", "path"),
    CODE_EVAL: ("round", "pass_at"),
    GENERATED: ("round", "samples"),
    EARLY_STOPPING_CHANGED: ("enabled", "patience"),
    CONFIG_CHANGED: ("round", "key", "old", "new"),
    HELD: ("round",),
    CONTINUED: ("round",),
    GPU_SAMPLE: ("devices", "clients"),
    WARNING: ("message",),
    STOP_REQUESTED: (),
    EARLY_STOP: ("round", "best_round", "best_eval_loss"),
    RUN_FINISHED: ("status",),
    ERROR: ("message",),
    CLIENT_CRASHED: ("client", "role", "pid", "restarting"),
    CLIENT_RESTARTED: ("client", "role", "pid", "attempt"),
    WAITING_FOR_CLIENTS: ("joined", "missing"),
    CLIENT_JOINED: ("client", "node_id", "address"),
}

# A `warning` is sent when a client's VRAM passes this share of its GPU's memory, and again only
# after it has dropped below the re-arm share (so a client hovering at 90% is not warned each
# sample); views mark a client or device past it.
MEMORY_WARNING_FRACTION = 0.9
MEMORY_REARM_FRACTION = 0.8

Event = dict[str, Any]


def make(type_: str, **fields: Any) -> Event:
    """A new, unstamped event; raises ValueError when `type_` or a required field is wrong."""
    event = {"type": type_, **fields}
    check(event)
    return event


def check(event: Event) -> None:
    type_ = event.get("type")
    if type_ not in REQUIRED_FIELDS:
        raise ValueError(f"unknown event type {type_!r}")
    missing = [name for name in REQUIRED_FIELDS[type_] if name not in event]
    if missing:
        raise ValueError(f"event {type_!r} lacks {', '.join(missing)}")


def stamp(event: Event, now: float | None = None) -> Event:
    """The event as it is written and handed to views: version and time first, non-finite
    numbers as None, no control characters in its strings (engine.core.text)."""
    return {
        "v": SCHEMA_VERSION,
        "t": time.time() if now is None else now,
        **printable_fields({key: _finite(value) for key, value in event.items()}),
    }


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def encode(event: Event) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n"


def read_events(path: Path) -> list[Event]:
    return list(iter_events(path))


def iter_events(path: Path) -> Iterator[Event]:
    """Events of an events.jsonl file, strictly: a torn tail (a crash mid-write) is skipped; any
    other damaged line raises RunFolderError naming the line. `scan_events` reads past damage."""
    scan = scan_events(path)
    if scan.damaged:
        number, why = scan.damaged[0]
        raise RunFolderError(f"{path}:{number}: not a valid event ({why})")
    yield from scan.events


@dataclass
class EventScan:
    """An events.jsonl as read: its events, the line each came from, and the damaged lines with
    why each is not an event. A torn tail is not damage: every crash can leave one."""

    events: list[Event] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)
    damaged: list[tuple[int, str]] = field(default_factory=list)


# What a reader takes from one events.jsonl at most (a run folder may come from anyone): a line
# longer than MAX_LINE_BYTES is skipped without being read into memory, and reading stops after
# MAX_RECORD_BYTES or MAX_RECORD_LINES, each with a note among the damage. A real record is far
# within them: ~450 bytes an event, ~2 events a second of a 2-client run (64 MiB: ~40 hours).
MAX_LINE_BYTES = 1 << 20
MAX_RECORD_BYTES = 64 << 20
MAX_RECORD_LINES = 400_000


def scan_events(path: Path) -> EventScan:
    """Every event that can be read from an events.jsonl file, however damaged it is, within the
    bounds above. Raises RunFolderError only when the file cannot be read, or holds events of a
    newer schema."""
    scan = EventScan()
    try:
        with open(path, "rb") as file:
            lines = bounded_lines(file, MAX_LINE_BYTES, MAX_RECORD_BYTES, MAX_RECORD_LINES)
            for line in lines:
                if isinstance(line, Cut):
                    scan.damaged.append((line.number, line.why))
                elif line.too_long:
                    why = f"longer than {MAX_LINE_BYTES >> 20} MiB: not read"
                    scan.damaged.append((line.number, why))
                else:
                    _scan_line(scan, path, line)
    except OSError as err:
        raise RunFolderError(f"cannot read {path}: {err.strerror}") from None
    return scan


def _scan_line(scan: EventScan, path: Path, line: RawLine) -> None:
    events, why = _read_line(line.raw)
    if why is not None and line.ended:  # a last piece with no newline: torn
        scan.damaged.append((line.number, why))
    for event in events:
        if (event.get("v") or 0) > SCHEMA_VERSION:
            raise RunFolderError(
                f"{path}:{line.number}: event schema v{event['v']} is newer than "
                f"this fedtui (v{SCHEMA_VERSION}); upgrade fedtui"
            )
        scan.events.append(event)
        scan.line_numbers.append(line.number)


def parse_line(raw: bytes | str) -> Event:
    """One recorded line as an event; ValueError saying why it is not one."""
    try:
        event = json.loads(raw, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(event, dict):
        raise ValueError(f"a JSON {type(event).__name__}, not an event object")
    try:
        check(event)
    except TypeError:  # an unhashable "type"
        raise ValueError(f"unknown event type {event.get('type')!r}") from None
    why = event_fields.problem(event)
    if why is not None:
        raise ValueError(why)
    return printable_fields(event)  # a run folder may come from anyone: nothing for a terminal


def _no_constant(name: str) -> Any:
    """NaN and Infinity: Python's json reads them, fedtui never writes them (null instead)."""
    raise ValueError(f"{name} is not JSON")


def _read_line(raw: bytes) -> tuple[list[Event], str | None]:
    """The events on one line, and why the line is damaged (None when it is not)."""
    if b"\0" not in raw:
        if not raw.strip():
            return [], None
        try:
            return [parse_line(raw)], None
        except ValueError as err:
            return [], str(err)
    # JSON escapes NUL, so fedtui never writes one: a run of NULs is bytes the disk lost (a power
    # cut leaves them where the file grew but its data never reached the disk). Whole events on
    # either side of them are kept.
    events = []
    for segment in raw.split(b"\0"):
        if segment.strip():
            with contextlib.suppress(ValueError):
                events.append(parse_line(segment))
    return events, "zeroed bytes: data lost in a crash"
