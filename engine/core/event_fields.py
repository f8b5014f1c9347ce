"""What a recorded event's values may be, checked where a record is read back
(engine.core.events.parse_line): a run folder may come from anyone, and every view sorts, indexes,
formats and sizes tables with these values, so a line holding what fedtui never writes (a string
for a number, a time of 1e300, a million clients, a config nested a thousand deep) is damage,
skipped with the rest of the record's damage, never a crash or a hang in a view.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.core.config import TABLES, RunConfig
from engine.core.config_checks import check_value
from engine.core.errors import ConfigError

MAX_DEPTH = 12  # fedtui's deepest events (gpu_sample, a config's tables) nest 4 deep
MAX_NUMBER = 2**64  # any number in an event: Flower's node ids are 64-bit; bytes, losses, seconds
MAX_TIME = 1e11  # unix seconds (the year 5138): later than any date a view can show
MAX_ROUND = 1_000_000
MAX_CLIENTS = 10_000  # client ids, num_clients: views make a row (and state) for each

_NUMBER = (int, float)
_INT = (int,)
_STR = (str,)
# Fields, by name, as fedtui writes them (None aside), whatever the event.
_FIELDS: dict[str, tuple[type, ...]] = {
    "v": _INT,
    "t": _NUMBER,
    "round": _INT,
    "client": _INT,
    "from_round": _INT,
    "best_round": _INT,
    "run_id": _STR,
    "key": _STR,
    "kind": _STR,
    "path": _STR,
    "role": _STR,
    "status": _STR,
    "message": _STR,
    "source": _STR,
    "address": _STR,
    "host": _STR,
    "reason": _STR,
    "imported_from": _STR,
    "unavailable": _STR,
    "partition": _STR,
    "precision": _STR,
    "forked_from": (dict,),
    "config": (dict,),
    "pass_at": (dict,),
    "step": _NUMBER,
    "steps_total": _NUMBER,
    "steps": _NUMBER,
    "loss": _NUMBER,
    "eval_loss": _NUMBER,
    "train_loss": _NUMBER,
    "best_eval_loss": _NUMBER,
    "learning_rate": _NUMBER,
    "min_delta": _NUMBER,
    "seconds": _NUMBER,
    "eval_seconds": _NUMBER,
    "seconds_left": _NUMBER,
    "generation_seconds": _NUMBER,
    "execution_seconds": _NUMBER,
    "bytes_sent": _INT,
    "bytes_received": _INT,
    "variate_bytes_sent": _INT,
    "variate_bytes_received": _INT,
    "examples": _INT,
    "tokens": _INT,
    "peak_rss_bytes": _INT,
    "peak_vram_bytes": _INT,
    "vram_bytes": _INT,
    "total_params": _INT,
    "trainable_params": _INT,
    "pid": _INT,
    "returncode": _INT,
    "attempt": _INT,
    "patience": _INT,
    "rounds_without_improvement": _INT,
    "restarting": (bool,),
    "enabled": (bool,),
    "missing": (list,),
    "sampled": (list,),
}
# Fields whose type depends on the event, and what the tables in them hold.
_BY_TYPE: dict[str, dict[str, tuple[type, ...]]] = {
    "round_started": {"clients": _INT},
    "partition_summary": {"clients": (list,)},
    "gpu_sample": {"clients": (dict,), "devices": (list,)},
    "generated": {"samples": (list,)},
}
_ROWS: dict[tuple[str, str], dict[str, tuple[type, ...]]] = {
    ("gpu_sample", "devices"): {
        "index": _INT,
        "name": _STR,
        "memory_total": _INT,
        "memory_used": _INT,
        "utilization": _NUMBER,
        "lost": (bool,),
    },
    ("gpu_sample", "clients"): {
        "rss_bytes": _INT,
        "vram_bytes": _INT,
        "device": _INT,
        "source": _STR,
    },
    ("partition_summary", "clients"): {
        "client": _INT,
        "samples": _INT,
        "sources": _INT,
        "largest_source_share": _NUMBER,
        "truncated": _INT,
    },
    ("generated", "samples"): {"prompt": _STR, "completion": _STR},
}
_RANGES = {
    "t": (0, MAX_TIME),
    "round": (0, MAX_ROUND),
    "from_round": (0, MAX_ROUND),
    "best_round": (0, MAX_ROUND),
    "client": (0, MAX_CLIENTS - 1),
}


def problem(event: dict[str, Any]) -> str | None:
    """Why `event` (a JSON object with a known type) is not what fedtui writes; None if it is."""
    why = _shape(event)
    if why is not None:
        return why
    type_ = event["type"]
    for name, value in event.items():
        why = _typed(name, value, _BY_TYPE.get(type_, {}).get(name) or _FIELDS.get(name))
        if why is None and (type_, name) in _ROWS:
            why = _rows(name, value, _ROWS[type_, name])
        if why is not None:
            return why
    for name in ("missing", "sampled"):
        ids = event.get(name) or []
        if not isinstance(ids, list) or not all(_is_client(i) for i in ids):
            return f"its {name!r} is not a list of client ids"
    for name, (low, high) in _RANGES.items():
        value = event.get(name)
        if value is not None and not low <= value <= high:
            return f"its {name!r} ({value:g}) is out of range"
    forked = event.get("forked_from")
    if forked is not None:
        shape = {"run": _STR, "path": _STR, "round": _INT}
        why = next((w for k in shape if (w := _typed(k, forked.get(k), shape[k]))), None)
        if why is not None or not isinstance(forked.get("path"), str):
            return f"its 'forked_from' is not a {{run, path, round}} table ({why or 'no path'})"
    if isinstance(event.get("config"), dict):
        return config_problem(event["config"])
    return None


def config_problem(config: dict[str, Any]) -> str | None:
    """Why a recorded config table is not one fedtui wrote: each declared key must hold a value
    its declaration takes (keys of other versions of fedtui are let be)."""
    try:
        _check_table(RunConfig, config, "")
    except ConfigError as err:
        return f"its config is not fedtui's ({err})"
    clients = config.get("num_clients", 0)
    if clients > MAX_CLIENTS:
        return f"its config's num_clients ({clients}) is more than {MAX_CLIENTS}"
    return None


def _check_table(cls: type, values: dict[str, Any], prefix: str) -> None:
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if f.type in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {prefix + f.name!r} must be a table")
            _check_table(TABLES[f.type], value, f"{prefix}{f.name}.")
        else:
            check_value(f"{prefix}{f.name}", f, value)


def _typed(name: str, value: Any, types: tuple[type, ...] | None) -> str | None:
    if value is None or types is None:
        return None
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        return f"its {name!r} is a {type(value).__name__}"
    return None


def _rows(name: str, value: Any, fields: dict[str, tuple[type, ...]]) -> str | None:
    if not isinstance(value, dict | list):  # null, which every type check lets through
        return f"its {name!r} is not a list or table of rows"
    rows = value.values() if isinstance(value, dict) else value
    for row in rows:
        if not isinstance(row, dict):
            return f"its {name!r} holds a {type(row).__name__}, not a table"
        for key, item in row.items():
            why = _typed(f"{name}.{key}", item, fields.get(key))
            if why is not None:
                return why
    if isinstance(value, dict) and not all(_client_id(key) for key in value):
        return f"its {name!r} is not a table of client ids"
    return None


def _client_id(key: str) -> bool:
    return key.isascii() and key.isdigit() and int(key) < MAX_CLIENTS


def _is_client(value: Any) -> bool:
    return type(value) is int and 0 <= value < MAX_CLIENTS


def _shape(value: Any) -> str | None:
    """Nesting and numbers, however deep, without recursion: at most MAX_DEPTH levels, every
    number finite and at most MAX_NUMBER in size."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, (int, float)) and not abs(item) <= MAX_NUMBER:  # NaN too
            return f"it holds a number out of range ({item:.3g})"
    return None
