"""Which OS user is on the other end of a loopback TCP connection (Linux).

The kernel knows the owner of every socket. For a connection to our server from
``client_ip:client_port``, the client's own socket is the one whose local end is
``client_ip:client_port`` and whose remote end is our ``server_ip:server_port``;
its owner is the caller's uid. It is asked for with one exact ``sock_diag``
netlink query (what ``ss`` uses), and, where netlink is unavailable, found in
``/proc/net/tcp`` / ``tcp6`` by the same two addresses.

Only local connections can be answered: a peer on another machine has no socket here.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import struct
from pathlib import Path

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLMSG_ERROR = 0x2
_NLMSG_HEADER = struct.Struct("=IHHII")
# struct inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid:
# sport, dport (big-endian), src[16], dst[16], interface, cookie[2].
_REQUEST = struct.Struct("=BBBxI")
_SOCKID_PORTS = struct.Struct("!HH")
_NO_COOKIE = b"\xff" * 8
# struct inet_diag_msg: 4 bytes, a 48-byte sockid, expires, rqueue, wqueue, then uid.
_UID_OFFSET = _NLMSG_HEADER.size + 4 + 48 + 12
_ALL_STATES = 0xFFFFFFFF
_PROC_NET: dict[int, Path] = {socket.AF_INET: Path("/proc/net/tcp"), socket.AF_INET6: Path("/proc/net/tcp6")}


def _address(host: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d
    if isinstance(ip, ipaddress.IPv4Address):
        return socket.AF_INET, ip.packed
    return socket.AF_INET6, ip.packed


def peer_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the client end of the TCP connection ``client`` -> ``server``,
    or None when this host has no such socket (a remote peer, a closed connection)."""
    try:
        family, client_ip = _address(client[0])
        server_family, server_ip = _address(server[0])
    except ValueError:
        return None
    if family != server_family:
        return None
    try:
        return _ask_netlink(family, client_ip, client[1], server_ip, server[1])
    except OSError:
        return _search_proc(family, client_ip, client[1], server_ip, server[1])


def _ask_netlink(family: int, src: bytes, sport: int, dst: bytes, dport: int) -> int | None:
    request = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES)
        + _SOCKID_PORTS.pack(sport, dport)
        + src.ljust(16, b"\0")
        + dst.ljust(16, b"\0")
        + struct.pack("=I", 0)
        + _NO_COOKIE
    )
    header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        nl.sendto(header + request, (0, 0))
        answer = nl.recv(8192)
    if len(answer) < _NLMSG_HEADER.size:
        raise OSError("short sock_diag answer")
    _length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(answer)
    if kind == _NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", answer, _NLMSG_HEADER.size)
        if -error == errno.ENOENT:
            return None  # no such socket here
        # Anything else (EPERM in a locked-down container...): the caller falls back to /proc.
        raise OSError(-error, "sock_diag refused the query")
    if len(answer) < _UID_OFFSET + 4:
        raise OSError("short sock_diag answer")
    (uid,) = struct.unpack_from("=I", answer, _UID_OFFSET)
    return int(uid)


def _proc_address(family: int, packed: bytes, port: int) -> str:
    # /proc/net/tcp prints each 32-bit word of the address in host byte order, as hex.
    words = [packed[i : i + 4] for i in range(0, len(packed), 4)]
    text = "".join(struct.unpack("=I", w)[0].to_bytes(4, "big").hex().upper() for w in words)
    return f"{text}:{port:04X}"


def _search_proc(family: int, src: bytes, sport: int, dst: bytes, dport: int) -> int | None:
    wanted = f"{_proc_address(family, src, sport)} {_proc_address(family, dst, dport)}"
    with contextlib.suppress(OSError):
        for line in _PROC_NET[family].read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 7 and f"{fields[1]} {fields[2]}" == wanted:
                return int(fields[7])
    return None
