"""`fedtui web`: fedtui's own app in a browser, served by textual-serve over plain HTTP.

Every request must carry the token made at start, on loopback too: other users of this machine
reach its loopback ports (SECURITY.md). The URL printed at start carries it as `?token=`; the
answer to such a request sets it as a cookie, which the page's own assets and websocket carry."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import shlex
import shutil
import signal
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from engine.core.errors import FedtuiError

_SHUTDOWN_S = 10.0  # for each page's app to end; the kernel hangs up on what is left
_HEADERS = {
    "X-Frame-Options": "DENY",  # no page of another port may frame this one and take its keys
    # The template links a Google font: the page must not depend on, nor call, the internet.
    "Content-Security-Policy": "frame-ancestors 'none'; style-src 'self' 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}


class TokenServer(Server):
    """textual-serve's server, every request checked against the token, the page's URLs relative
    to the address the browser used (not the address bound: 0.0.0.0, an SSH tunnel's far end)."""

    def __init__(self, command: str, token: str, port: int, url: str) -> None:
        super().__init__(command, title="fedtui")
        self._token = token
        self._cookie = f"fedtui-web-{port}"  # a cookie is sent to every port of its host
        self._url = url
        self._sessions: set[asyncio.Task[Any]] = set()

    def allows(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._token.encode())

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._check_token)
        return app

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.allows(request.query.get("token", "")):
            response = await handler(request)
            if not response.prepared:  # a websocket's answer has gone already
                response.set_cookie(
                    self._cookie, self._token, httponly=True, samesite="Strict", path="/"
                )
        elif self.allows(request.cookies.get(self._cookie, "")) and _same_origin(request):
            response = await handler(request)
        else:
            raise web.HTTPForbidden(
                text="fedtui web: open the URL it printed (with ?token=)\n", headers=_HEADERS
            )
        if not response.prepared:
            response.headers.update(_HEADERS)
        return response

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        return {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": "/ws",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": self.title},
        }

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """A page's session: an app process of its own for as long as the page is open. As
        textual-serve's, but the app is a `_PageApp`."""
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)

        async def close() -> None:
            await websocket.close()

        app = _PageApp(
            self.command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=close,
            download_manager=self.download_manager,
        )
        session = asyncio.current_task()
        assert session is not None
        self._sessions.add(session)
        try:
            width = to_int(request.query.get("width", "80"), 80)
            await app.start(width, to_int(request.query.get("height", "24"), 24))
            await self._process_messages(websocket, app)
        except asyncio.CancelledError:  # the server is ending (on_shutdown)
            pass
        finally:
            self._sessions.discard(session)
            await app.stop()
            await websocket.close()
        return websocket

    async def on_startup(self, app: web.Application) -> None:
        print(self._url, flush=True)

    async def on_shutdown(self, app: web.Application) -> None:
        """Cancelled, a session ends its app as a closed page does."""
        for session in self._sessions:
            session.cancel()

    async def run(self, listener: socket.socket) -> None:
        runner = web.AppRunner(
            await self._make_app(), handle_signals=False, shutdown_timeout=_SHUTDOWN_S
        )
        await runner.setup()
        await web.SockSite(runner, listener).start()
        ended = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, ended.set)
        await ended.wait()
        await runner.cleanup()


class _PageApp(AppService):
    async def stop(self) -> None:
        """A page closed is a terminal window closed: the app is hung up on, as a terminal's
        is, so a live run it watches is detached, not lost (`fedtui run`, `attach`). Asked to
        quit instead, its monitor would wait for the run to end, holding the session."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGHUP)
        await super().stop()


def _same_origin(request: web.Request) -> bool:
    """A page on another port of this host is the same site, so it sends the SameSite cookie;
    its websocket would still name its own origin, which a browser always sends."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def serve(host: str, port: int, fedtui_args: list[str]) -> int:
    """Serve `fedtui ARGS` (each page its own process) until Ctrl+C or SIGTERM."""
    if shutil.which("setpriv") is None:
        raise FedtuiError("fedtui web needs setpriv (util-linux) to end the apps it serves")
    listener = _listen(host, port)
    token = secrets.token_urlsafe(32)
    bound = listener.getsockname()[1]
    address = f"[{host}]" if ":" in host else host
    served = shlex.join(["fedtui", *fedtui_args])
    url = (
        f"fedtui web: serving `{served}` at http://{address}:{bound}/?token={token}\n"
        "plain HTTP: from elsewhere, forward a port over SSH or put a TLS proxy in front; "
        "Ctrl+C ends it"
    )
    with listener:
        asyncio.run(TokenServer(_command(fedtui_args), token, bound, url).run(listener))
    return 0


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address, family=family)
    except OSError as err:
        raise FedtuiError(f"cannot listen on {host} port {port}: {err.strerror or err}") from None


def _command(fedtui_args: list[str]) -> str:
    """The shell command textual-serve starts per page: this Python's fedtui (`-P`: not a `tui/`
    folder where it runs), hung up on by the kernel if the server dies before it could end it."""
    program = [sys.executable, "-P", "-m", "tui.cli", *fedtui_args]
    return "exec " + shlex.join(["setpriv", "--pdeathsig", "HUP", "--", *program])
