"""What config each round of a run ran with: the config it started with (or went on with, when
resumed) and every live change (`config_changed`), each from its round on."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from engine.core.config_files import assign_dotted


@dataclass(frozen=True)
class ConfigChange:
    round: int  # the first round it applies to
    key: str  # dotted: "early_stopping.patience"
    old: Any
    new: Any
    source: str | None = None


@dataclass
class ConfigHistory:
    # In record order: (first round, a whole config) when a run starts or resumes, and each
    # change. A later entry wins for the rounds it covers.
    _entries: list[tuple[int, dict[str, Any] | ConfigChange]] = field(default_factory=list)

    def started(self, config: dict[str, Any], from_round: int) -> None:
        self._entries.append((from_round, config))

    def changed(self, change: ConfigChange) -> None:
        self._entries.append((change.round, change))

    @property
    def changes(self) -> list[ConfigChange]:
        return [entry for _, entry in self._entries if isinstance(entry, ConfigChange)]

    def changed_keys(self) -> list[str]:
        """The keys changed at least once, in the order they first were."""
        return list(dict.fromkeys(change.key for change in self.changes))

    def for_round(self, number: int) -> dict[str, Any]:
        """The config round `number` ran (or will run) with."""
        config: dict[str, Any] = {}
        for first, entry in self._entries:
            if first > number:
                continue
            if isinstance(entry, ConfigChange):
                assign_dotted(config, entry.key, entry.new)
            else:
                config = copy.deepcopy(entry)
        return config
