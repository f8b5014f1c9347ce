"""Flower's `flower-supernode`, polling for work every quarter second instead of every 3 s.

Flower 1.42's SuperNode, when the SuperLink has no message for it, sleeps a hard-coded 3 s
before asking again (`flwr/supernode/start_client_internal.py`), and 0.5 s between looks for a
reply to send. A client's next message therefore waits 1.5 s on average after each round, which
was the largest part of a small model's per-round overhead (BENCHMARKS.md). fedtui starts every
SuperNode through this module: it runs Flower's own entry point with that module's `time`
replaced by one whose `sleep` lasts at most POLL_S (engine.flower.internals: SUPERNODE_TIME).
Nothing else changes; Flower's files are untouched.

    python -m engine.flower.supernode [flower-supernode's arguments]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from flwr.supernode.cli import flower_supernode

from engine.flower import internals

POLL_S = 0.25


class ShortSleeps:
    """The `time` module, but no sleep longer than POLL_S."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, POLL_S))


def main() -> None:
    internals.swap(internals.SUPERNODE_TIME, ShortSleeps())
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
