"""Flower's `flower-superlink`, with only its Fleet API open to other hosts.

Flower 1.42 serves three APIs on one HTTP port: the Fleet API (SuperNodes ask it for work), the
Control API (`flwr run` submits an app through it, and the SuperLink then runs that app's code)
and the Runtime API (the ServerApp's and SuperExec's). Served to other hosts (`fedtui serve`),
that port would let anyone who reaches it submit code for the server to run: TLS proves the
server to the clients and SuperNode authentication checks the SuperNodes, but the Control API
checks no one unless Flower's account plugin (not in this distribution) is there. fedtui starts
every SuperLink through this module: a request from another host reaches only the Fleet API and
the health check, the rest are refused (403; a WebSocket, though Flower 1.42 opens none, is
closed before it is accepted). Requests from this host (the controller's `flwr`
commands, SuperExec, the ServerApp) pass as before; a peer whose address the server does not
know is a stranger.

    python -m engine.flower.superlink [flower-superlink's arguments]
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import psutil
from flwr.superlink.cli import flower_superlink

from engine.flower import internals

OPEN_TO_OTHER_HOSTS = ("/v1/fleet/", "/health")
REFUSAL = b"fedtui: only Flower's Fleet API is open to other hosts"
ADDRESSES_REREAD_S = 1.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FleetOnlyForOtherHosts:
    """ASGI middleware: refuse every request from another host but the Fleet API's."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self._local = _addresses_of_this_host()
        self._local_read_at = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] in ("http", "websocket")  # refused even if Flower adds a WebSocket
            and not scope["path"].startswith(OPEN_TO_OTHER_HOSTS)
            and not self._from_this_host(scope.get("client"))
        ):
            if scope["type"] == "websocket":  # closed before it is accepted: HTTP 403
                await send({"type": "websocket.close", "code": 1008, "reason": REFUSAL.decode()})
                return
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": REFUSAL})
            return
        await self.app(scope, receive, send)

    def _from_this_host(self, client: tuple[str, int] | None) -> bool:
        if client is None:  # the server could not tell the peer's address: a stranger
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_loopback:
            return True
        stale = time.monotonic() - self._local_read_at > ADDRESSES_REREAD_S
        if address not in self._local and stale:  # an address this host took since?
            self._local = _addresses_of_this_host()
            self._local_read_at = time.monotonic()
        return address in self._local


def _addresses_of_this_host() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            try:
                found.add(ipaddress.ip_address(entry.address.split("%")[0]))
            except ValueError:  # a MAC address
                continue
    return found


def main() -> None:
    create_app = internals.SUPERLINK_APP.resolve()

    def create_app_for_fedtui(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_middleware(FleetOnlyForOtherHosts)
        return app

    internals.swap(internals.SUPERLINK_APP, create_app_for_fedtui)
    # uvicorn takes a client address from X-Forwarded-For when the peer is trusted: only
    # loopback, its default, never what the environment says (`*` would let anyone be local)
    os.environ.pop("FORWARDED_ALLOW_IPS", None)
    sys.argv[0] = "flower-superlink"
    flower_superlink()


if __name__ == "__main__":
    main()
