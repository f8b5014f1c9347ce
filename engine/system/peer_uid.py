"""Which user a TCP connection on this host comes from, asked of the kernel.

A TCP server learns its peer's address, never who the peer is, and a loopback port is open to
every account on the machine. The kernel knows each TCP socket of the network namespace by its
local and remote address, with its state, the uid that owns it and its inode: the peer's socket
is the one whose local address is the server's peer address and whose remote address is the
server's own, and its uid is the peer's.

It is asked for that one socket by its four addresses (sock_diag over netlink, as `ss` asks):
one hash lookup. Where the kernel has no sock_diag, its tables /proc/net/tcp and /proc/net/tcp6
are read instead; each read walks every bucket of the kernel's TCP hash, milliseconds on a
machine with a few GiB, which on every request of every API that checks its peer cost the
SuperLink a share of a core while clients trained (BENCHMARKS.md, "Training speed").

A connection from another host, or from another network namespace, has no such socket here;
nor has a peer whose socket is no longer held by any process (closed after sending its request:
the kernel lists it with inode 0, and as owned by root). Both are nobody's here: `None`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_UID, _INODE = 7, 9  # columns of a row: sl local remote st queues tr retrnsmt uid timeout inode

# <linux/netlink.h>, <linux/sock_diag.h>, <linux/inet_diag.h>: a request is a netlink header
# and an inet_diag_req_v2 (family, protocol, extensions, states, socket id); its answer an
# inet_diag_msg (family, state, timer, retransmits, the socket id, expires, queues, uid, inode).
# A socket id is both ports and addresses (network order), then its interface and cookie.
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_ERROR = 4, 20, 2
_HEADER = "=IHHII"  # length, type, flags (NLM_F_REQUEST: one socket, not a dump), seq, pid
_HEADER_SIZE = struct.calcsize(_HEADER)
_SOCKET_ID = "!HH16s16sIII"  # interface 0 and the cookie's all-ones read alike in any order
_NO_COOKIE = (0xFFFFFFFF, 0xFFFFFFFF)
_ALL_STATES = 0xFFFFFFFF
_MESSAGE_SIZE = 4 + struct.calcsize(_SOCKET_ID) + 20
_TCP_LISTEN = 10
_TIMEOUT_S = 1.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def uid_of_peer(peer: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the socket at `peer` that is connected to `server` (as the server sees
    both ends); None if no live socket on this host is that end."""
    try:
        ends = _parse(peer), _parse(server)
    except ValueError:
        return None
    try:
        return from_sock_diag(*ends)
    except OSError:  # no sock_diag in this kernel, or not Linux
        return from_tables(*ends)


def from_sock_diag(peer: tuple[Address, int], server: tuple[Address, int]) -> int | None:
    """The kernel's answer for the one socket whose local end is `peer` and remote `server`."""
    (peer_address, peer_port), (server_address, server_port) = peer, server
    if peer_address.version != server_address.version:
        return None
    family = socket.AF_INET if peer_address.version == 4 else socket.AF_INET6
    socket_id = struct.pack(
        _SOCKET_ID,
        peer_port,
        server_port,
        peer_address.packed,
        server_address.packed,
        0,  # any interface
        *_NO_COOKIE,
    )
    request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, _ALL_STATES) + socket_id
    header = struct.pack(_HEADER, _HEADER_SIZE + len(request), _SOCK_DIAG_BY_FAMILY, 1, 1, 0)
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        raise OSError(errno.EAFNOSUPPORT, "no netlink: not Linux")
    with socket.socket(netlink, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(_TIMEOUT_S)
        diag.sendall(header + request)
        reply = diag.recv(65536)
    _, kind, *_ = struct.unpack_from(_HEADER, reply)
    if kind == _NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, _HEADER_SIZE)
        if -error == errno.ENOENT:
            return None
        raise OSError(-error, os.strerror(-error))
    if kind != _SOCK_DIAG_BY_FAMILY or len(reply) < _HEADER_SIZE + _MESSAGE_SIZE:
        raise OSError(errno.EPROTO, "sock_diag answered what it does not answer")
    found_family, state = reply[_HEADER_SIZE], reply[_HEADER_SIZE + 1]
    ports = struct.unpack_from("!HH", reply, _HEADER_SIZE + 4)
    addresses = struct.unpack_from("16s16s", reply, _HEADER_SIZE + 8)
    uid, inode = struct.unpack_from("=II", reply, _HEADER_SIZE + 4 + len(socket_id) + 12)
    # A listener answers for a port no connection holds; inode 0: no process holds the socket.
    if ports != (peer_port, server_port) or state == _TCP_LISTEN or inode == 0:
        return None
    if addresses != (_as(found_family, peer_address), _as(found_family, server_address)):
        return None
    return int(uid)


def _as(family: int, address: Address) -> bytes:
    """`address` as a socket id of `family` holds it: an IPv4 one in an IPv6 socket mapped."""
    if family == socket.AF_INET6 and isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{address}").packed
    return address.packed.ljust(16, b"\0")


def from_tables(peer: tuple[Address, int], server: tuple[Address, int]) -> int | None:
    """The row of the kernel's socket tables whose local end is `peer` and remote `server`."""
    ends = peer, server
    owners = set()
    for table in TABLES:
        local, remote = (_row_address(table, address, port) for address, port in ends)
        if local is None or remote is None:
            continue
        try:
            text = table.read_text()
        except OSError:  # no IPv6 on this host, or not Linux: no row there
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) <= _INODE or (fields[1], fields[2]) != (local, remote):
                continue
            if fields[_INODE] != "0":  # held by a process, not an orphan or in TIME_WAIT
                owners.add(int(fields[_UID]))
    return owners.pop() if len(owners) == 1 else None


def _parse(end: tuple[str, int]) -> tuple[Address, int]:
    address = ipaddress.ip_address(end[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address, int(end[1])


def _row_address(table: Path, address: Address, port: int) -> str | None:
    """How `table` writes `address:port`: each 32-bit word of the address in this machine's
    byte order, in hex, then the port. An IPv4 socket is in `tcp`; an IPv6 one in `tcp6`, an
    IPv4 peer of it as ::ffff:a.b.c.d."""
    if table.name == "tcp":
        if not isinstance(address, ipaddress.IPv4Address):
            return None
        packed = address.packed
    elif isinstance(address, ipaddress.IPv4Address):
        packed = ipaddress.IPv6Address(f"::ffff:{address}").packed
    else:
        packed = address.packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"
