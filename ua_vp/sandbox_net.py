"""A mission's private network: its own network namespace, with user-mode outbound
networking from ``slirp4netns`` and no way back to the host's loopback.

Both backends start the program in a fresh network namespace. For a mission that
may use the network, the sandbox reports the pid of a process inside that namespace
on an *info* pipe and then waits on a *go* pipe before it starts the program; the
worker meanwhile attaches ``slirp4netns --configure --disable-host-loopback`` to
that pid (a ``tap0`` at 10.0.2.100 with a default route, DNS at 10.0.2.3) and
writes *go* once slirp4netns says it is ready. ``--disable-host-loopback`` is what
keeps 10.0.2.2 (slirp's alias of the host's 127.0.0.1) unreachable, so neither the
ops API nor a PostgreSQL on localhost answer. A mission without network gets the
namespace with only its own loopback: no TCP, no UDP, nothing out.

With ``UA_VP_SANDBOX_LOOPBACK_PORTS`` set, the worker also makes the listeners of
:mod:`ua_vp.sandbox_relay` in the namespace before *go*: those ports of the host's
127.0.0.1, and only those, answer at the mission's own 127.0.0.1.

slirp4netns ends when its *exit* pipe closes: when the mission's process ends, or
when the worker dies, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field

from ua_vp import sandbox_relay
from ua_vp.errors import RuntimeFailed

SETUP_SECONDS = 10.0
"""How long the sandbox may take to report its pid, and slirp4netns to be ready."""
TAP = "tap0"


def slirp_binary() -> str | None:
    return shutil.which("slirp4netns")


@dataclass
class PrivateNetwork:
    """The pipes of one handshake; :meth:`attach` runs the worker's side of it."""

    info_r: int
    info_w: int
    go_r: int
    go_w: int
    loopback_ports: tuple[int, ...] = ()
    """Ports of the host's loopback relayed into the namespace (:mod:`ua_vp.sandbox_relay`)."""
    slirp: asyncio.subprocess.Process | None = field(default=None, init=False)
    relay: sandbox_relay.Relay | None = field(default=None, init=False)
    _open: set[int] = field(default_factory=set, init=False)
    """Ours and not closed yet. Only these are closed: a closed fd's number is reused at once (by
    another mission's pipe, or by this one's exit pipe), so "closed before" says nothing about a number.
    The write end of slirp4netns's exit pipe is among them until :meth:`close`."""

    @classmethod
    def open(cls, loopback_ports: tuple[int, ...] = ()) -> PrivateNetwork:
        info_r, info_w = os.pipe()
        go_r, go_w = os.pipe()
        network = cls(info_r, info_w, go_r, go_w, loopback_ports)
        network._open.update((info_r, info_w, go_r, go_w))
        return network

    @property
    def child_fds(self) -> tuple[int, int]:
        """The ends the sandbox inherits: it writes its pid to the first and waits on the second."""
        return self.info_w, self.go_r

    def started(self) -> None:
        """The sandbox has its ends now; ours must go, so its death reads as end-of-file."""
        for fd in self.child_fds:
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.remove(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    async def attach(self) -> int:
        """Give the sandbox its network, then let it start the program; the namespace's pid."""
        try:
            async with asyncio.timeout(SETUP_SECONDS):
                pid = await asyncio.to_thread(_read_child_pid, self.info_r)
            # bwrap reports the pid before it configures the namespace's loopback, and fails if
            # slirp4netns configured it first: wait until the loopback has its address.
            async with asyncio.timeout(SETUP_SECONDS):
                await _loopback_configured(pid)
            ready_r, ready_w = os.pipe()
            exit_r, exit_w = os.pipe()
            self._open.add(exit_w)
            try:
                self.slirp = await asyncio.create_subprocess_exec(
                    slirp_binary() or "slirp4netns",
                    "--configure",
                    "--disable-host-loopback",
                    "--ready-fd",
                    str(ready_w),
                    "--exit-fd",
                    str(exit_r),
                    str(pid),
                    TAP,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    pass_fds=(ready_w, exit_r),
                )
            finally:
                os.close(ready_w)
                os.close(exit_r)
            try:
                async with asyncio.timeout(SETUP_SECONDS):
                    ready = await asyncio.to_thread(os.read, ready_r, 1)
            finally:
                os.close(ready_r)
            if ready != b"1":
                raise RuntimeFailed("slirp4netns exited before the mission's network was ready", pid=pid)
            if self.loopback_ports:
                self.relay = await asyncio.wait_for(sandbox_relay.open_relay(pid, self.loopback_ports), SETUP_SECONDS)
            os.write(self.go_w, b"1\n")  # a whole line: the shell's read wants one
            return pid
        except (OSError, TimeoutError, ValueError, sandbox_relay.RelayFailed) as exc:
            raise RuntimeFailed(f"the mission's private network could not be set up: {exc!r}") from None
        finally:
            self._close(self.go_w)

    async def close(self) -> None:
        """Close every pipe still open (the exit pipe among them: slirp4netns ends by itself),
        stop the relay, and reap slirp4netns, killing it if it lingers."""
        for fd in tuple(self._open):
            self._close(fd)  # before any await: a cancellation cannot skip it
        if self.relay is not None:
            await self.relay.close()
            self.relay = None
        slirp = self.slirp
        if slirp is not None and slirp.returncode is None:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        await slirp.wait()
            finally:
                if slirp.returncode is None:
                    slirp.kill()  # also when a second cancellation cut the wait short
            await slirp.wait()


async def _loopback_configured(pid: int) -> None:
    while True:
        with open(f"/proc/{pid}/net/fib_trie", "rb") as f:  # the namespace's routing tables
            if b"127.0.0.1" in f.read():
                return
        await asyncio.sleep(0.001)


def _read_child_pid(fd: int) -> int:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(data)["child-pid"])
    raise ValueError(f"the sandbox ended before it reported its pid (it said {data[:200]!r})")
