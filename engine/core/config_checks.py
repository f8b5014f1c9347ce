"""Checking a config table against its declaration (engine.core.config): unknown keys (with the
closest known one), types, choices, minimums and the limits between keys, each failure one
`ConfigError` line."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from engine.core.config import DEVICES, TABLES, RunConfig
from engine.core.errors import ConfigError
from engine.core.strategies import strategy_problem


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    config: RunConfig = _build(RunConfig, values, prefix="")
    for key, limit, name in (
        ("clients_per_round", config.num_clients, "num_clients"),
        ("min_clients", config.sampled_per_round, "the clients sampled per round"),
    ):
        if getattr(config, key) > limit:
            raise ConfigError(
                f"config key {key!r} must be at most {name} ({limit}), got {getattr(config, key)}"
            )
    problem = strategy_problem(config)
    if problem:
        raise ConfigError(problem)
    if config.early_stopping.metric == "pass@1" and not config.code_eval.enabled:
        raise ConfigError(
            "config key 'early_stopping.metric' is pass@1, which only code_eval measures: "
            "set code_eval.enabled = true"
        )
    return config


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {prefix + name!r}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in values:
            continue
        value = values[name]
        if f.type in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {prefix + name!r} must be a table")
            kwargs[name] = _build(TABLES[f.type], value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = check_value(f"{prefix}{name}", f, value)
    return cls(**kwargs)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def check_value(name: str, f: dataclasses.Field, value: Any) -> Any:
    if f.type == "list[int]":
        if not isinstance(value, list) or not all(
            isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
        ):
            raise ConfigError(
                f"config key {name!r} must be a list of GPU indices like [0, 1], got {value!r}"
            )
        return value
    if f.type == "list[str]":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"config key {name!r} must be a list of strings, got {value!r}")
        allowed: tuple[str, ...] = f.metadata["choices"]
        wrong = [item for item in value if allowed and item not in allowed]
        if wrong:
            raise ConfigError(
                f"config key {name!r} takes a list of {', '.join(allowed)}; got {wrong[0]!r}"
            )
        if allowed and len(set(value)) != len(value):
            raise ConfigError(f"config key {name!r} names a value twice: {value!r}")
        return value
    if f.type == "str | list[str]":
        if value == "auto" or (
            isinstance(value, list)
            and value
            and all(isinstance(item, str) and item for item in value)
        ):
            return value
        raise ConfigError(
            f'config key {name!r} must be "auto" or a list of module names like '
            f'["q_proj", "v_proj"], got {value!r}'
        )
    expected = _TYPES[str(f.type)]  # a name: this module's annotations are strings
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"config key {name!r} must be {f.type}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"config key {name!r} must be one of {', '.join(choices)}; got {value!r}")
    minimum = f.metadata.get("minimum")
    if minimum is not None:
        too_small = value <= minimum if f.metadata["exclusive"] else value < minimum
        if too_small:
            relation = ">" if f.metadata["exclusive"] else ">="
            raise ConfigError(f"config key {name!r} must be {relation} {minimum:g}, got {value!r}")
    if name == "device" and not is_device(str(value)):
        raise ConfigError(f"config key 'device' must be {DEVICES}; got {value!r}")
    return value


def is_device(value: str) -> bool:
    """Whether `value` is one of DEVICES."""
    prefix, _, index = value.partition(":")
    return value in ("auto", "cpu", "cuda") or (
        prefix == "cuda" and index.isascii() and index.isdigit()
    )
