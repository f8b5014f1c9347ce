"""`fedtui web` over plain HTTP and its websocket: the token, the sessions' app processes, bad
input. The page in a real browser: tests/e2e/test_browser.py."""

import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import aiohttp
import psutil
import pytest

from tests.waiting import until
from tests.web_server import SEED, fedtui_web


def status(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as answer:
            return answer.status, answer.headers
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers


def cookie_of(headers):
    return headers["Set-Cookie"].split(";", 1)[0]


def test_bound_to_every_address_a_request_needs_the_token_even_from_loopback():
    with fedtui_web(host="0.0.0.0") as served:
        assert "http://0.0.0.0:" in served.url
        port = served.base.rsplit(":", 1)[1]
        local = f"http://127.0.0.1:{port}"
        for path in ("/", "/static/js/textual.js", "/ws", f"/?token={served.token[:-1]}"):
            assert status(local + path)[0] == 403, path

        answer, headers = status(f"{local}/?token={served.token}")
        assert answer == 200
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert headers["X-Frame-Options"] == "DENY"
        cookie = {"Cookie": cookie_of(headers)}
        assert status(local + "/static/js/textual.js", cookie)[0] == 200
        assert status(local + "/", {"Cookie": f"fedtui-web-{port}=wrong"})[0] == 403
        # Another port of this host is the same site: its pages send the cookie, not our origin.
        other_page = {**cookie, "Origin": "http://127.0.0.1:1"}
        assert status(local + "/static/js/textual.js", other_page)[0] == 403


async def test_a_pages_app_runs_while_its_websocket_is_open_and_ends_when_it_closes():
    with fedtui_web("replay", SEED) as served:
        async with aiohttp.ClientSession() as session:
            websocket = await session.ws_connect(f"{served.base}/ws?token={served.token}")
            output = await websocket.receive_bytes(timeout=60)  # the app's first screen
            assert output
            (pid,) = await until(lambda: served.apps(), timeout=30)
            assert f"replay {SEED}" in " ".join(psutil.Process(pid).cmdline())
            await websocket.close()
            await until(lambda: not served.apps(), timeout=30)
        assert served.process.poll() is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
async def test_the_server_ending_with_a_page_open_ends_its_app(signum):
    with fedtui_web("replay", SEED) as served:
        async with aiohttp.ClientSession() as session:
            websocket = await session.ws_connect(f"{served.base}/ws?token={served.token}")
            await websocket.receive_bytes(timeout=60)
            await until(lambda: served.apps(), timeout=30)
            served.process.send_signal(signum)
            async for _ in websocket:  # as a browser does, to the end: it answers the close
                pass
            await until(lambda: served.process.poll() is not None, timeout=30)
            await until(lambda: not served.apps(), timeout=10)
    if signum == signal.SIGTERM:
        assert served.process.returncode == 0


def fedtui(*args):
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_a_port_in_use_is_one_error_line():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        failed = fedtui("web", "--port", str(port))
    assert failed.returncode == 2
    assert failed.stderr.startswith("fedtui: error: cannot listen on 127.0.0.1 port")
    assert failed.stderr.count("\n") == 1 and failed.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--host", "not a host"],
        ["--port", "70000"],
        ["runs"],  # not the app
        ["replay"],  # the served command is checked before serving
        ["run", "--headless"],
    ],
)
def test_bad_input_is_one_error_line_before_anything_is_served(args):
    failed = fedtui("web", "--port", "0", *args)
    assert failed.returncode == 2
    assert failed.stderr.startswith("fedtui: error: ")
    assert failed.stderr.count("\n") == 1 and failed.stdout == ""


def test_the_help_lists_fedtui_web():
    assert "web" in fedtui("--help").stdout
    assert "fedtui web [--host HOST] [--port PORT] [COMMAND ...]" in fedtui("web", "--help").stdout
