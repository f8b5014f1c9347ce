"""Flower's `flower-supernode`, polling for work every quarter second instead of every 3 s, its
Runtime API answering only the user running it.

Flower 1.42's SuperNode, when the SuperLink has no message for it, sleeps a hard-coded 3 s
before asking again (`flwr/supernode/start_client_internal.py`), and 0.5 s between looks for a
reply to send. A client's next message therefore waits 1.5 s on average after each round, which
was the largest part of a small model's per-round overhead (BENCHMARKS.md). fedtui starts every
SuperNode through this module: it runs Flower's own entry point with that module's `time`
replaced by one whose `sleep` lasts at most POLL_S (engine.flower.internals: SUPERNODE_TIME).

The SuperNode's Runtime API (the ClientApp's: it hands out a round's task with the global model
and takes the reply) listens on a loopback port every account on the machine reaches, and checks
only a token of the task it is asked about. Its app is wrapped in engine.flower.owner_only
(SUPERNODE_APP): only this user's processes (SuperExec, the ClientApps, the warm worker) reach
it; its server wakes twice a second, not ten times (engine.flower.server_ticks). Flower's files
are untouched.

    python -m engine.flower.supernode [flower-supernode's arguments]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from flwr.supernode.cli import flower_supernode

from engine.flower import internals, server_ticks
from engine.flower.owner_only import OwnerOnly, distrust_forwarded_headers

POLL_S = 0.25


class ShortSleeps(internals.TimeWithOwnSleep):
    """The `time` module, but no sleep longer than POLL_S."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, POLL_S))


def main() -> None:
    create_app = internals.SUPERNODE_APP.resolve()

    def create_app_for_fedtui(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_middleware(OwnerOnly)
        return app

    internals.swap(internals.SUPERNODE_APP, create_app_for_fedtui)
    internals.swap(internals.SUPERNODE_TIME, ShortSleeps())
    server_ticks.tick_less_often()
    distrust_forwarded_headers()
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
