"""Changing a run's config once it has started: between the rounds of a live run (`fedtui set`,
the monitor's form) or in a fork (`fedtui run --from`).

A value is checked exactly as `--set` checks it (the same parsing, then the declaration's
checks in engine.core.config). What may change is the declaration's too: between rounds, the
keys declared live; in a fork, anything its parent's weights allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.core.config import RunConfig
from engine.core.config_checks import config_from_dict
from engine.core.config_files import assign_dotted, get_dotted, parse_override
from engine.core.config_reference import declared_keys
from engine.core.errors import ConfigError

# Why a key that is not live cannot change between rounds: what it fixed when the run started.
_FIXED_BY = {
    "the model every process loaded": (
        "model",
        "lora",
        "precision",
        "gradient_checkpointing",
        "seq_len",
        "transfer_dtype",
    ),
    "the clients' data, split when the run started": (
        "dataset",
        "text_column",
        "source_column",
        "samples_per_client",
        "eval_samples",
        "partition",
        "dirichlet_alpha",
        "seed",
    ),
    "the processes Flower started": (
        "num_clients",
        "backend",
        "client_cpus",
        "client_gpu_fraction",
        "device",
        "threads_per_client",
        "client_gpus",
        "warm_workers",
        "shared_memory_weights",
    ),
    "the server's strategy, built when the run started": ("strategy", "aggregation"),
    "the run folder's name": ("name",),
}
# What a fork cannot change: it starts from its parent's trained weights.
FORK_FIXED = ("model", "lora.enabled", "lora.r", "lora.target_modules")


@dataclass(frozen=True)
class Change:
    key: str  # dotted: "early_stopping.patience"
    old: Any
    new: Any


def parse_changes(items: Iterable[str]) -> dict[str, Any]:
    """`key=value` items, read as `--set` reads them, as {key: value} (the last of a key wins)."""
    changes: dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        changes[key] = value
    if not changes:
        raise ConfigError("no change given: key=value, for example learning_rate=5e-4")
    return changes


def change_between_rounds(
    config: RunConfig, changes: dict[str, Any]
) -> tuple[RunConfig, list[Change]]:
    """`config` with `changes`, each a live key with a valid value; ConfigError (one line, naming
    the key and why) otherwise, and then nothing changes."""
    changed = with_changes(config, changes)  # unknown keys and bad values, as --set says them
    for key in changes:
        why = why_not_live(key)
        if why:
            raise ConfigError(why)
    return changed


def why_not_live(key: str) -> str | None:
    """Why `key` (a declared key) cannot change in a live run, or None when it can."""
    declared = {declared.name: declared for declared in declared_keys()}
    if key not in declared:  # a whole table
        return f"{key} is a table: change its keys one by one ({key}.KEY=VALUE)"
    if declared[key].live:
        return None
    fixed_by = next(
        (what for what, keys in _FIXED_BY.items() if key.split(".")[0] in keys),
        "the run as it started",
    )
    then = (
        f"a new run can have another (fedtui run --set {key}=...)"
        if key in FORK_FIXED
        else f"a fork of the run can have another (fedtui run --from RUN --set {key}=...)"
    )
    return f"{key} cannot change in a live run: it fixed {fixed_by}; {then}"


def fork_changes(parent: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """A fork's config: its parent's with `changes`, which may not touch what shaped the
    parent's weights."""
    for key in changes:
        if key in FORK_FIXED or key == "lora" and isinstance(changes[key], dict):
            raise ConfigError(
                f"a fork starts from its parent's weights: {key} cannot change "
                f"(it keeps the parent's {', '.join(FORK_FIXED)})"
            )
    return with_changes(parent, changes)[0]


def with_changes(config: RunConfig, changes: dict[str, Any]) -> tuple[RunConfig, list[Change]]:
    """`config` with `changes` (dotted keys), every value checked by the declaration, and what
    changed (keys whose value differs from before)."""
    values = config.to_dict()
    old = {key: get_dotted(values, key) for key in changes}
    for key, value in changes.items():
        assign_dotted(values, key, value)
    changed = config_from_dict(values)
    after = changed.to_dict()
    return changed, [
        Change(key, old[key], new) for key in changes if (new := get_dotted(after, key)) != old[key]
    ]
