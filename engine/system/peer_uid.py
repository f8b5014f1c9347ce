"""Which user a TCP connection on this host comes from, read from the kernel's socket tables.

A TCP server learns its peer's address, never who the peer is, and a loopback port is open to
every account on the machine. Linux lists every TCP socket of the network namespace in
/proc/net/tcp (IPv4) and /proc/net/tcp6 (IPv6): its local and remote address, its state, the
uid that owns it and its inode. The peer's socket is the row whose local address is the
server's peer address and whose remote address is the server's own: its uid is the peer's.

A connection from another host, or from another network namespace, has no such row; nor has
a peer whose socket is no longer held by any process (closed after sending its request: the
kernel lists it with inode 0, and as owned by root). Both are nobody's here: `None`.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_UID, _INODE = 7, 9  # columns of a row: sl local remote st queues tr retrnsmt uid timeout inode

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def uid_of_peer(peer: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the socket at `peer` that is connected to `server` (as the server sees
    both ends); None if no live socket on this host is that end."""
    try:
        ends = _parse(peer), _parse(server)
    except ValueError:
        return None
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
