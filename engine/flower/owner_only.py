"""The ASGI middleware in front of every HTTP API of Flower's that fedtui starts: only the user
running fedtui reaches it.

Flower 1.42 serves each of its APIs over HTTP (uvicorn) with no check of who asks: the SuperLink's
Control API (`flwr run` submits an app through it, and the app then runs as this user, here and
on every client), its Runtime API (the ServerApp's and SuperExec's: a run's tasks and messages),
and each SuperNode's Runtime API (the ClientApp's: a round's task, the model, and the reply). A
local run listens on loopback with `--insecure`, a port every account on the machine can reach.
So each request's peer is looked up in the kernel's sockets (engine.system.peer_uid) and
served only if its socket belongs to this process's uid, which every process fedtui starts
shares (the controller's `flwr` commands, SuperExec, the ServerApp, the ClientApps and warm
workers). Everyone else, another host included, is refused (403; a WebSocket, though Flower
1.42 opens none, is closed before it is accepted), except on the paths given as open: the
SuperLink's Fleet API, which SuperNodes of other hosts use (`fedtui serve`), and its health check.

uvicorn would take the client's address from an `X-Forwarded-For` header when the peer is a
proxy it trusts (loopback, by default): any local user could name the address of one of fedtui's
own connections. `distrust_forwarded_headers` makes it trust no proxy; call it before the server
starts.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from engine.system.peer_uid import uid_of_peer

REFUSAL = b"fedtui: this API answers only the user running fedtui"
FORWARDED_ENV = "FORWARDED_ALLOW_IPS"  # uvicorn's trusted proxies; "" trusts none

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class OwnerOnly:
    """ASGI middleware: refuse every request from a socket another uid owns (or none on this
    host does), but those for `open_paths` (exactly) or a path under `open_prefixes`."""

    def __init__(
        self, app: App, open_paths: tuple[str, ...] = (), open_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = open_prefixes
        self.uid = os.getuid()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not (  # refused even for a WebSocket
            self._open(scope["path"]) or self._from_owner(scope)
        ):
            if scope["type"] == "websocket":  # closed before it is accepted: HTTP 403
                await send({"type": "websocket.close", "code": 1008, "reason": REFUSAL.decode()})
                return
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": REFUSAL})
            return
        await self.app(scope, receive, send)

    def _open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def _from_owner(self, scope: Scope) -> bool:
        client, server = scope.get("client"), scope.get("server")
        if client is None or server is None:  # the server cannot tell the ends: a stranger
            return False
        return uid_of_peer((client[0], client[1]), (server[0], server[1])) == self.uid


def distrust_forwarded_headers() -> None:
    """uvicorn, started after this in this process, trusts no proxy's `X-Forwarded-For`."""
    os.environ[FORWARDED_ENV] = ""
