"""A SuperLink fedtui starts answers its APIs only to the user running fedtui, but for Flower's
Fleet API and its health check, which SuperNodes of other hosts need (engine.flower.superlink,
engine.flower.owner_only); nor does Flower's own switch for an unguarded gRPC Control API reach
it. tests/e2e/test_other_users.py meets the refusal from another user of this host, live;
tests/e2e/test_multihost.py from another host."""

import asyncio
import os
import sys

import psutil
import pytest

from engine.flower import home as flower_home, superlink
from engine.flower.owner_only import OwnerOnly
from engine.flower.superlink import OPEN_PATHS, OPEN_PREFIXES, REFUSAL
from tests.test_peer_uid import own_connection_ends

ANOTHER_HOST = ("192.0.2.7", 40123)  # TEST-NET-1: never this machine's
SERVER = ("127.0.0.1", 9092)
INTERNAL = "FLWR_INTERNAL_GRPC_CONTROL_API"  # "1" opens a gRPC Control API on 0.0.0.0


def this_hosts_lan_address():
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family.name == "AF_INET" and not entry.address.startswith("127."):
                return entry.address
    pytest.skip("this machine has no address but loopback")


@pytest.fixture(params=["127.0.0.1", "::1", "lan"])
def own_connection(request):
    """A live TCP connection of this process's: the addresses of its two ends, as the server
    sees them (client, server). Served on a LAN address, the controller's `flwr run` comes
    from it."""
    host = this_hosts_lan_address() if request.param == "lan" else request.param
    with own_connection_ends(host) as ends:
        yield ends


def request(path, client, server=SERVER, kind="http"):
    """Whether a request for `path` from `client` to `server` reaches Flower's app; one that
    does not must have been answered 403 with the reason (a WebSocket: closed before it was
    accepted)."""
    reached, sent = [], []

    async def flower(scope, receive, send):
        reached.append(scope["path"])

    async def send(message):
        sent.append(message)

    guarded = OwnerOnly(flower, open_paths=OPEN_PATHS, open_prefixes=OPEN_PREFIXES)
    scope = {"type": kind, "path": path, "client": client, "server": server}
    asyncio.run(guarded(scope, None, send))
    if not reached and kind == "websocket":
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": REFUSAL.decode()}]
    elif not reached:
        assert [message.get("status") for message in sent] == [403, None]
        assert sent[1]["body"] == REFUSAL
    return bool(reached)


@pytest.mark.parametrize(
    "path", ["/v1/control/start-run", "/v1/runtime/pull-app-inputs", "/docs", "/openapi.json"]
)
def test_another_host_reaches_no_api_but_the_fleet(path):
    assert not request(path, ANOTHER_HOST)
    assert not request(path, ("::ffff:192.0.2.7", 40123))


def test_another_host_opens_no_websocket_but_to_the_fleet_api(own_connection):
    assert not request("/v1/control/stream-logs", ANOTHER_HOST, kind="websocket")
    assert request("/v1/fleet/pull-messages", ANOTHER_HOST, kind="websocket")
    assert request("/v1/control/stream-logs", *own_connection, kind="websocket")


def test_the_servers_lifespan_events_pass():
    reached = []

    async def flower(scope, receive, send):
        reached.append(scope["type"])

    asyncio.run(OwnerOnly(flower)({"type": "lifespan"}, None, None))
    assert reached == ["lifespan"]


@pytest.mark.parametrize("path", ["/v1/fleet/register-node", "/v1/fleet/pull-messages", "/health"])
def test_another_host_reaches_the_fleet_api_and_the_health_check(path):
    assert request(path, ANOTHER_HOST)


@pytest.mark.parametrize("path", ["/healthz", "/health/", "/health/../v1/control/start-run"])
def test_the_health_check_is_open_by_its_exact_path_only(path):
    assert not request(path, ANOTHER_HOST)


def test_the_user_running_fedtui_reaches_every_api(own_connection):
    assert request("/v1/control/start-run", *own_connection)
    assert request("/v1/runtime/pull-app-inputs", *own_connection)


def test_an_address_of_this_host_is_not_enough(own_connection):
    """A loopback or LAN address is every local account's: only the socket's owner counts. A
    port no socket of this host holds has no owner at all."""
    (host, _), server = own_connection
    assert not request("/v1/control/start-run", (host, 1), server)


@pytest.mark.parametrize("path", ["/v1/control/start-run", "/v1/runtime/pull-app-inputs"])
def test_a_peer_whose_address_is_unknown_is_a_stranger(path, own_connection):
    client, server = own_connection
    assert not request(path, None)
    assert not request(path, None, kind="websocket")
    assert not request(path, client, server=None)  # nor the server's own end
    assert request("/v1/fleet/pull-messages", None)


def test_flowers_internal_switches_never_reach_its_programs(tmp_path, monkeypatch):
    monkeypatch.setenv(INTERNAL, "1")
    monkeypatch.setenv("FLWR_INTERNAL_GRPC_FLEET_API", "1")

    env = flower_home.environment(tmp_path, tmp_path / "home", {"FLWR_INTERNAL_X": "1"})

    assert not [name for name in env if name.startswith("FLWR_INTERNAL_")]
    assert env["FLWR_HOME"] == str(tmp_path / "home")  # the rest as before


def test_the_superlink_drops_them_whoever_started_it(monkeypatch):
    """Started by hand, with them in its environment: Flower still never sees them."""
    seen = []
    monkeypatch.setattr(sys, "argv", ["python -m engine.flower.superlink", "--insecure"])
    monkeypatch.setenv(INTERNAL, "1")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn: X-Forwarded-For from anyone
    monkeypatch.setattr(superlink.internals, "swap", lambda premise, replacement: None)
    monkeypatch.setattr(superlink, "flower_superlink", lambda: seen.append(dict(os.environ)))

    superlink.main()

    (env,) = seen
    assert INTERNAL not in env
    assert env["FORWARDED_ALLOW_IPS"] == ""  # uvicorn then trusts no proxy's header
