"""A SuperLink fedtui starts opens only Flower's Fleet API (and its health check) to other hosts;
this host reaches every API as before (engine.flower.superlink). tests/e2e/test_multihost.py
meets the refusal from another host, live."""

import asyncio

import psutil
import pytest

from engine.flower.superlink import REFUSAL, FleetOnlyForOtherHosts

ANOTHER_HOST = ("192.0.2.7", 40123)  # TEST-NET-1: never this machine's


def this_hosts_lan_address():
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family.name == "AF_INET" and not entry.address.startswith("127."):
                return entry.address
    pytest.skip("this machine has no address but loopback")


def request(path, client, kind="http"):
    """Whether a request for `path` from `client` reaches Flower's app; one that does not must
    have been answered 403 with the reason (a WebSocket: closed before it was accepted)."""
    reached, sent = [], []

    async def flower(scope, receive, send):
        reached.append(scope["path"])

    async def send(message):
        sent.append(message)

    scope = {"type": kind, "path": path, "client": client}
    asyncio.run(FleetOnlyForOtherHosts(flower)(scope, None, send))
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


def test_another_host_opens_no_websocket_but_to_the_fleet_api():
    assert not request("/v1/control/stream-logs", ANOTHER_HOST, kind="websocket")
    assert request("/v1/fleet/pull-messages", ANOTHER_HOST, kind="websocket")
    assert request("/v1/control/stream-logs", ("127.0.0.1", 5000), kind="websocket")


def test_the_servers_lifespan_events_pass():
    reached = []

    async def flower(scope, receive, send):
        reached.append(scope["type"])

    asyncio.run(FleetOnlyForOtherHosts(flower)({"type": "lifespan"}, None, None))
    assert reached == ["lifespan"]


@pytest.mark.parametrize("path", ["/v1/fleet/register-node", "/v1/fleet/pull-messages", "/health"])
def test_another_host_reaches_the_fleet_api_and_the_health_check(path):
    assert request(path, ANOTHER_HOST)


@pytest.mark.parametrize(
    "client", [("127.0.0.1", 5000), ("::1", 5000), ("::ffff:127.0.0.1", 5000), "lan"]
)
def test_this_host_reaches_every_api(client):
    if client == "lan":  # served on a LAN address, the controller's `flwr run` comes from it
        client = (this_hosts_lan_address(), 5000)
    assert request("/v1/control/start-run", client)


@pytest.mark.parametrize("path", ["/v1/control/start-run", "/v1/runtime/pull-app-inputs"])
def test_a_peer_whose_address_is_unknown_is_a_stranger(path):
    assert not request(path, None)
    assert not request(path, None, kind="websocket")
    assert request("/v1/fleet/pull-messages", None)
