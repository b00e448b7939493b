"""Chosen ports of the host's loopback, reachable from a mission's private network.

A sandboxed mission with network has a network namespace of its own, and slirp4netns
keeps the host's loopback out of it (:mod:`ua_vp.sandbox_net`). A local model proxy
(LiteLLM, Ollama) listens there, though. ``UA_VP_SANDBOX_LOOPBACK_PORTS`` lists the
ports a mission may reach anyway: inside, ``127.0.0.1:PORT`` answers and leads to the
host's ``127.0.0.1:PORT``; every other port of the host's loopback stays out of reach,
and the settings refuse the ops API's and the database's ports (:mod:`ua_vp.config`).

How: a socket belongs to the network namespace it was *made* in, whoever uses it
later. So once the sandbox has reported the pid of a process in the mission's
namespace, the worker starts this file as a short helper
(``python -I -S sandbox_relay.py PID FD PORT...``) that joins that namespace
(first the user namespace owning it, unless that is the worker's own), makes a listening
socket on the namespace's ``127.0.0.1`` for each port, hands them back over the
inherited socketpair ``FD`` (``SCM_RIGHTS``) and exits. The worker's event loop then
accepts on them and, per connection, connects to the same port of the host's
``127.0.0.1`` and copies bytes both ways (:class:`Relay`). All of this happens before
the sandbox lets the program start, and the listeners close with the mission.

Why this shape and not a relay inside the sandbox: nothing of it runs inside the
confinement, so it is the same for both backends, owes nothing to the sandbox's
filesystem view (the checkout holding this file may be hidden), its seccomp filter,
Landlock or PID namespace (an agent can neither read nor kill it), and there is no
per-connection fd passing. The worker cannot join the namespace itself: a process
with threads may not enter a user namespace, hence the helper. The price is that
the relayed bytes go through the worker's event loop, which is little for model
traffic; at most :data:`MAX_CONNECTIONS` at once per mission.

Only ``127.0.0.1`` is served, not ``::1``: point the agent at ``http://127.0.0.1:PORT``,
not ``localhost``. A mission without network (``constraints.network`` off) gets no
ports: it has no network at all. Off unless the setting lists ports: no helper, no
listener, nothing in the worker's loop.

This file runs as a script with the standard library alone (``-I -S``), like
:mod:`ua_vp.sandbox_exec`; only the worker's side is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__)
CONNECT_SECONDS = 10.0
"""How long a connection to the host's port may take before the mission's side is reset."""
MAX_CONNECTIONS = 128
"""Relayed connections one mission may hold open at once; past it new ones are reset."""
_CHUNK = 64 * 1024
_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
_NS_GET_USERNS = 0xB701  # ioctl on a namespace: a descriptor of the user namespace owning it


# --- the helper: inside the mission's namespace, just long enough to make the listeners -----------


def listen_inside(pid: int, ports: Sequence[int]) -> list[socket.socket]:
    """Listening sockets on ``127.0.0.1`` of ``pid``'s network namespace, one per port."""
    net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # Entering a network namespace takes CAP_SYS_ADMIN in the user namespace that owns it; ours
        # does as root, else the one the sandbox made. Not the program's own: unprivileged bwrap
        # nests a second one below it, where nothing can be entered.
        user = fcntl.ioctl(net, _NS_GET_USERNS)
        try:
            # A user namespace cannot be re-entered.
            if os.fstat(user).st_ino != os.stat("/proc/self/ns/user").st_ino:
                _setns(user, _CLONE_NEWUSER, "user")
        finally:
            os.close(user)
        _setns(net, _CLONE_NEWNET, "network")
    finally:
        os.close(net)
    listeners = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        listeners.append(sock)
    return listeners


def _setns(fd: int, kind: int, what: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ctypes.c_int(fd), ctypes.c_int(kind)) != 0:
        raise OSError(ctypes.get_errno(), f"cannot enter the mission's {what} namespace")


def main(argv: list[str]) -> int:
    try:
        pid, fd, *ports = (int(arg) for arg in argv)
        listeners = listen_inside(pid, ports)
        with socket.socket(fileno=fd) as channel:
            socket.send_fds(channel, [struct.pack(f"={len(ports)}H", *ports)], [s.fileno() for s in listeners])
    except (OSError, ValueError) as exc:
        print(f"ua-vp loopback relay: {exc}", file=sys.stderr)
        return 1
    return 0


# --- the worker's side --------------------------------------------------------------------------


class RelayFailed(Exception):
    """The listeners could not be made in the mission's namespace."""


@dataclass
class Relay:
    """The listeners of one mission and the connections relayed through them."""

    ports: tuple[int, ...]
    servers: list[asyncio.Server] = field(default_factory=list)
    connections: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self, listeners: Sequence[socket.socket]) -> None:
        for port, sock in zip(self.ports, listeners, strict=True):
            self.servers.append(await asyncio.start_server(self._handler(port), sock=sock))

    def _handler(self, port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            if len(self.connections) >= MAX_CONNECTIONS:
                _reset(writer)
                return
            self.connections.add(task)
            try:
                await _relay(port, reader, writer)
            finally:
                self.connections.discard(task)

        return handle

    async def close(self) -> None:
        """Stop listening and cut every relayed connection."""
        for server in self.servers:
            server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)


async def open_relay(pid: int, ports: Sequence[int]) -> Relay:
    """Listeners on ``ports`` of ``127.0.0.1`` in ``pid``'s network namespace, served by this loop."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        try:
            helper = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                str(SCRIPT),
                str(pid),
                str(theirs.fileno()),
                *map(str, ports),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        try:
            _, said = await helper.communicate()
        except BaseException:
            # Out of time (a namespace that would not let it in): it must not linger.
            with contextlib.suppress(ProcessLookupError):
                helper.kill()
            await helper.wait()
            raise
        if helper.returncode != 0:
            raise RelayFailed(said.decode(errors="replace").strip() or f"the helper exited {helper.returncode}")
        # The helper has exited: what it sent waits in the socketpair's buffer.
        ours.setblocking(False)
        try:
            _, fds, _, _ = socket.recv_fds(ours, 2 * len(ports), len(ports))
        except BlockingIOError:
            fds = []
    listeners = [socket.socket(fileno=fd) for fd in fds]
    if len(listeners) != len(ports):
        for sock in listeners:
            sock.close()
        raise RelayFailed(f"the helper handed over {len(listeners)} listeners for {len(ports)} ports")
    relay = Relay(tuple(ports))
    try:
        await relay.serve(listeners)
    except BaseException:
        for sock in listeners:
            sock.close()
        await relay.close()
        raise
    return relay


async def _relay(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    except (OSError, TimeoutError):
        # Nothing listens there (or it is stuck): the mission sees a reset, not an empty answer.
        _reset(writer)
        return
    except BaseException:
        writer.close()  # the mission ended meanwhile
        raise
    copies = [asyncio.ensure_future(_copy(reader, up_writer)), asyncio.ensure_future(_copy(up_reader, writer))]
    try:
        await asyncio.gather(*copies)
    except OSError:
        pass  # a reset on either side ends both
    finally:
        for copy in copies:
            copy.cancel()
        await asyncio.gather(*copies, return_exceptions=True)
        for side in (writer, up_writer):
            side.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction until its end of file, which is passed on (a half-close: the other may go on)."""
    while chunk := await reader.read(_CHUNK):
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Linger zero: close() sends a reset, so the program sees "refused" rather than a silent close.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
