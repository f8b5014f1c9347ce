"""Flower's `flower-superlink`, with only its Fleet API open to anyone but the user running it.

Flower 1.42 serves three APIs on one HTTP port: the Fleet API (SuperNodes ask it for work), the
Control API (`flwr run` submits an app through it, and the SuperLink then runs that app's code)
and the Runtime API (the ServerApp's and SuperExec's). Whoever reaches that port could submit
code for this user to run, or pull and push a run's messages: the Control API checks no one
unless Flower's account plugin (not in this distribution) is there, and a local run listens on
loopback, which every account on the machine reaches. fedtui starts every SuperLink through
this module: its app is wrapped in engine.flower.owner_only, so only this user's processes (the
controller's `flwr` commands, SuperExec, the ServerApp) reach any API but the Fleet API and the
health check, which SuperNodes of other hosts need (`fedtui serve`: TLS proves the server to
them and SuperNode authentication checks them).

Flower's `FLWR_INTERNAL_GRPC_*` variables would also open its gRPC Control and Fleet APIs,
which no middleware guards: they are dropped here, whoever started the process. Its HTTP server
wakes twice a second, not ten times (engine.flower.server_ticks).

    python -m engine.flower.superlink [flower-superlink's arguments]
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flwr.superlink.cli import flower_superlink

from engine.flower import internals, server_ticks
from engine.flower.home import INTERNAL_ENV_PREFIX
from engine.flower.owner_only import REFUSAL, OwnerOnly, distrust_forwarded_headers

__all__ = ["OPEN_PATHS", "OPEN_PREFIXES", "REFUSAL", "main"]

# The health check, exactly (a prefix would open `/healthz`, `/health/...`), and the Fleet API.
OPEN_PATHS = ("/health",)
OPEN_PREFIXES = ("/v1/fleet/",)


def main() -> None:
    create_app = internals.SUPERLINK_APP.resolve()

    def create_app_for_fedtui(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_middleware(OwnerOnly, open_paths=OPEN_PATHS, open_prefixes=OPEN_PREFIXES)
        return app

    internals.swap(internals.SUPERLINK_APP, create_app_for_fedtui)
    for name in [name for name in os.environ if name.startswith(INTERNAL_ENV_PREFIX)]:
        del os.environ[name]  # the gRPC APIs they open bypass the middleware
    server_ticks.tick_less_often()
    distrust_forwarded_headers()
    sys.argv[0] = "flower-superlink"
    flower_superlink()


if __name__ == "__main__":
    main()
