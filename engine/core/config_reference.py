"""The config's keys as people read them: `fedtui config` prints them (text, or `--markdown`, which
is the README's configuration reference), and the TUI's forms list them. Everything here is read
from the declaration in engine.core.config; nothing is restated.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from typing import Any

from engine.core.config import TABLES, RunConfig
from engine.core.config_files import toml_value


@dataclass(frozen=True)
class Key:
    """One declared key, as listings show it."""

    name: str  # dotted for a table's keys: "early_stopping.patience"
    type: str
    default: Any
    help: str
    live: bool
    choices: tuple = ()
    minimum: float | None = None
    exclusive_minimum: bool = False


def declared_keys(cls: type = RunConfig, prefix: str = "") -> list[Key]:
    """Every key of the config, tables' keys after the top-level ones, in declaration order."""
    found, tables = [], []
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.type in TABLES:
            tables.extend(declared_keys(TABLES[str(f.type)], f"{prefix}{f.name}."))
            continue
        meta = f.metadata
        found.append(
            Key(
                prefix + f.name,
                str(f.type),
                getattr(defaults, f.name),
                meta["help"],
                meta["live"],
                meta["choices"],
                meta["minimum"],
                meta["exclusive"],
            )
        )
    return found + tables


def live_keys() -> list[str]:
    """The keys a live run may change between rounds."""
    return [declared.name for declared in declared_keys() if declared.live]


def value_text(key: Key) -> str:
    """What values a key takes: its type and bounds, or its choices."""
    if key.choices:
        choices = " | ".join(f'"{choice}"' for choice in key.choices)
        return f"list of {choices}" if key.type.startswith("list") else choices
    if key.minimum is None:
        return key.type
    return f"{key.type} {'>' if key.exclusive_minimum else '>='} {key.minimum:g}"


def render_text() -> str:
    """Every key as `fedtui config` prints it: `name = default`, then what it takes and its help."""
    blocks = []
    for key in declared_keys():
        live = "; may change between rounds" if key.live else ""
        help_text = textwrap.fill(key.help, 100, initial_indent="    ", subsequent_indent="    ")
        blocks.append(
            f"{key.name} = {toml_value(key.default)}\n    {value_text(key)}{live}\n{help_text}"
        )
    return "\n".join(blocks) + "\n"


def render_markdown() -> str:
    """Every key as a markdown table: the README's configuration reference."""
    rows = [
        "| key | default | values | live | what it does |",
        "|---|---|---|---|---|",
    ]
    for key in declared_keys():
        cells = [
            f"`{key.name}`",
            f"`{toml_value(key.default)}`",
            value_text(key),
            "yes" if key.live else "",
            key.help,
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"
