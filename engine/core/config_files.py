"""Where a config comes from and where it goes: the built-in presets, a TOML file, `--set
key=value` overrides, and the resolved config written into every run folder as TOML.

A config is resolved in layers: the built-in defaults (engine.core.config), then a preset or a
TOML file, then each `--set` in order. Every mistake is reported as one `ConfigError` line
naming the key.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from engine.core.config import RunConfig
from engine.core.config_checks import config_from_dict
from engine.core.errors import ConfigError


def presets() -> dict[str, Path]:
    """Built-in presets by name (the TOML files shipped in engine/core/presets)."""
    folder = resources.files("engine.core") / "presets"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def load_config(
    source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Resolve defaults, then `source` (a TOML path or a preset name), then `--set` overrides."""
    values: dict[str, Any] = {}
    if source is not None:
        values = _read_toml(_locate(str(source)))
    for item in overrides:
        key, value = parse_override(item)
        assign_dotted(values, key, value)
    return config_from_dict(values)


def changes_from(
    source: str | Path | None, overrides: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """The keys `source` (a TOML path or a preset name) and then each `--set` give, as dotted
    keys with their values, unchecked: changes to lay over another config (a fork's)."""
    values: dict[str, Any] = _read_toml(_locate(str(source))) if source is not None else {}
    changes = dict(_dotted(values))
    for item in overrides:
        key, value = parse_override(item)
        changes[key] = value
    return changes


def _dotted(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            items += _dotted(value, f"{prefix}{key}.")
        else:
            items.append((prefix + key, value))
    return items


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value`: the value is read as TOML (numbers, booleans, strings, lists), else a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def override_item(key: str, value: Any) -> str:
    """`key=value` that `parse_override` reads back as `value`: the value as TOML, so a string
    that reads as a number stays a string and a list keeps its escapes."""
    return f"{key}={toml_value(value)}"


def to_toml(config: RunConfig) -> str:
    """The resolved config as TOML, written into every run folder."""
    top, tables = [], []
    for name, value in config.to_dict().items():
        if isinstance(value, dict):
            tables.append(f"\n[{name}]")
            tables.extend(f"{k} = {toml_value(v)}" for k, v in value.items())
        else:
            top.append(f"{name} = {toml_value(value)}")
    return "\n".join(top + tables) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # JSON's string escapes are TOML's too


def _locate(source: str) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    known = presets()
    if source in known:
        return known[source]
    if path.suffix == ".toml" or "/" in source:
        raise ConfigError(f"config file not found: {source}")
    raise ConfigError(
        f"no config file or preset named {source!r} (presets: {', '.join(sorted(known))})"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None


def assign_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    *tables, leaf = key.split(".")
    target = values
    for table in tables:
        target = target.setdefault(table, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {table!r} is not a table")
    target[leaf] = value


def get_dotted(values: dict[str, Any], key: str) -> Any:
    """The value of a dotted key in a config table (None where it has none)."""
    *tables, leaf = key.split(".")
    for table in tables:
        values = values.get(table) or {}
    return values.get(leaf)
