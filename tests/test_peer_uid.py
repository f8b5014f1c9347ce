"""The user a TCP connection on this host comes from is asked of the kernel (sock_diag), or read
from its socket tables where it has no sock_diag (engine.system.peer_uid): the SuperLink's and
SuperNodes' APIs answer only their own user. Each test runs with each way alone."""

import contextlib
import errno
import os
import socket

import pytest

from engine.system import peer_uid
from tests.other_user import NOBODY_UID, as_nobody, skip_unless_root_can_be_nobody

# Connects to the port it is given, says so, and holds the connection until its stdin closes.
CONNECT_AND_HOLD = """
import socket, sys
connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
sys.stdin.read()
"""


@pytest.fixture(params=["sock_diag", "tables"])
def uid_of_peer(request, monkeypatch):
    """engine.system.peer_uid.uid_of_peer with one way: the tables never read, or no sock_diag."""

    def tables_read(*ends):
        raise AssertionError("the socket tables were read")

    def no_sock_diag(*ends):
        raise OSError(errno.EPROTONOSUPPORT, "no sock_diag in this kernel")

    if request.param == "sock_diag":
        monkeypatch.setattr(peer_uid, "from_tables", tables_read)
    else:
        monkeypatch.setattr(peer_uid, "from_sock_diag", no_sock_diag)
    return peer_uid.uid_of_peer


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def accepted(listener):
    """The server's end of the next connection: (its socket, the peer's address)."""
    listener.settimeout(30)
    server_end, peer = listener.accept()
    return server_end, peer


def test_a_connection_from_another_user_is_that_users(listener, uid_of_peer):
    skip_unless_root_can_be_nobody()
    nobody = as_nobody(CONNECT_AND_HOLD, listener.getsockname()[1])
    try:
        server_end, peer = accepted(listener)
        with server_end:
            assert nobody.stdout.readline() == "connected\n"
            assert uid_of_peer(peer, server_end.getsockname()) == NOBODY_UID
    finally:
        nobody.communicate(timeout=30)


@contextlib.contextmanager
def own_connection_ends(bind, connect=None):
    """A live TCP connection of this process's to a server listening on `bind` (reached at
    `connect`, by default the address it listens on): the addresses of its two ends as the server
    sees them, (peer, server). Skipped where this host cannot listen on `bind`."""
    try:
        server = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET)
        server.bind((bind, 0))
        server.listen()
    except OSError:
        pytest.skip(f"this host cannot listen on {bind}")
    with server, socket.create_connection((connect or bind, server.getsockname()[1])):
        server_end, peer = accepted(server)
        with server_end:
            yield peer[:2], server_end.getsockname()[:2]


@pytest.mark.parametrize(
    ("bind", "connect"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::", "127.0.0.1"),  # an IPv4 peer of a dual-stack server
        ("::1", "::1"),
    ],
)
def test_this_processes_own_connection_is_its_own(bind, connect, uid_of_peer):
    with own_connection_ends(bind, connect) as (peer, server):
        assert uid_of_peer(peer, server) == os.getuid()


def test_a_peer_that_closed_its_socket_is_nobodys(listener, uid_of_peer):
    """A stranger that sends its request and closes at once leaves an orphaned socket, which
    the kernel lists as root's: it must not pass for the owner when fedtui runs as root."""
    client = socket.create_connection(listener.getsockname())
    server_end, peer = accepted(listener)
    with server_end:
        client.close()
        assert uid_of_peer(peer, server_end.getsockname()) is None


def test_a_peer_on_another_host_or_with_no_address_is_nobodys(listener, uid_of_peer):
    assert uid_of_peer(("192.0.2.7", 40123), listener.getsockname()) is None
    assert uid_of_peer(("a unix socket", 0), listener.getsockname()) is None
