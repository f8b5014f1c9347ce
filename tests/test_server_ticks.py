"""uvicorn's server as fedtui's SuperLink and SuperNodes run it (engine.flower.server_ticks): it
wakes every TICK_S instead of ten times a second, and still serves, renews its Date header once a
second and exits when told."""

import threading
import time
import urllib.request

import pytest
import uvicorn

from engine.flower import internals, server_ticks
from tests.waiting import wait_for

CEILING = 30.0


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def quiet_server():
    """A real uvicorn server on a free loopback port, ticking as fedtui's do, in a thread; its
    ticks counted: (server, port, tick times). Afterwards it is told to exit, and must."""
    with internals.swapped({internals.UVICORN_LOOP: server_ticks.main_loop}):
        config = uvicorn.Config(
            hello, host="127.0.0.1", port=0, lifespan="off", log_level="error", ws="none"
        )
        server = uvicorn.Server(config)
        ticks = []
        on_tick = server.on_tick

        async def counted(counter):
            ticks.append(time.monotonic())
            return await on_tick(counter)

        server.on_tick = counted
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, timeout=CEILING)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield server, port, ticks
        server.should_exit = True
        thread.join(timeout=CEILING)
        assert not thread.is_alive()


def date_of_an_answer(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=CEILING) as answer:
        assert answer.read() == b"hello"
        return answer.headers["date"]


def test_the_server_answers_and_renews_its_date_header_waking_only_every_tick(quiet_server):
    server, port, ticks = quiet_server
    first = date_of_an_answer(port)
    started, ticks_before = time.monotonic(), len(ticks)

    wait_for(lambda: date_of_an_answer(port) != first, timeout=CEILING, interval=0.2)

    seconds = time.monotonic() - started
    assert len(ticks) - ticks_before <= seconds / server_ticks.TICK_S + 2  # uvicorn's: / 0.1
