"""A pretend internet for the real agent CLIs: the stub providers (``stub_providers.py``)
served inside a network namespace this module makes, on a private ``10.231.N.0/24``
address reached over a veth pair, never on the host's loopback (which a sandboxed
agent cannot see) and never on an outside address.

Needs root and ``ip`` (iproute2). :func:`stub_internet` is a context manager; the
namespace, the veth pair and the server are gone when it exits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STUB = Path(__file__).with_name("stub_providers.py")
_NET = ipaddress.ip_network("10.231.0.0/16")


@dataclass(frozen=True)
class StubInternet:
    address: str
    """The stub's address inside its namespace, reachable from the host's namespace."""
    port: int
    key: str
    """The only API key the stubs accept."""
    log: Path
    """Every request the stubs received, one JSON object per line."""

    @property
    def anthropic_base_url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"http://{self.address}:{self.port}/v1"


def why_unavailable() -> str | None:
    """Why a stub internet cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None:
        return "needs ip (iproute2)"
    return None


def _free_subnet() -> int:
    """A third octet whose 10.231.N.0/24 no interface here uses (other test runs may hold some)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    start = os.getpid() % 250 + 1
    for offset in range(250):
        n = (start + offset) % 250 + 1
        if f" 10.231.{n}." not in used:
            return n
    raise RuntimeError("no free 10.231.N.0/24 subnet")


def _remove_stale() -> None:
    """Namespaces of earlier runs that were killed before they could clean up (their veth goes with them)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in re.findall(r"^(uavp-stub-(\d+)-\d+)", listed, re.M):
        if not Path(f"/proc/{name[1]}").exists():
            subprocess.run(["ip", "netns", "del", name[0]], capture_output=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def stub_internet(workdir: Path) -> Iterator[StubInternet]:
    _remove_stale()
    n = _free_subnet()
    tag = f"uavp{n}x{os.getpid() % 10000}"  # interface names have at most 15 characters
    ns, host_if, ns_if = f"uavp-stub-{os.getpid()}-{n}", f"{tag}h", f"{tag}n"
    host_addr, stub_addr = f"10.231.{n}.1", f"10.231.{n}.2"
    key = "stub-key-" + secrets.token_hex(16)  # not sk-…: a leak must not be hidden by log masking
    log = workdir / "stub-requests.jsonl"
    proc: subprocess.Popen[str] | None = None
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_addr}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{stub_addr}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", host_addr)
        proc = subprocess.Popen(
            [
                *("ip", "netns", "exec", ns, sys.executable, str(STUB), "--host", stub_addr, "--port", "0"),
                *("--key", key, "--log", str(log)),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"stub providers did not start: {line!r}")
        yield StubInternet(stub_addr, int(line.split()[1]), key, log)
    finally:
        if proc is not None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        # Deleting the namespace deletes its veth end, and with it the host's end.
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


if __name__ == "__main__":
    # By hand: `python tests/agents/stub_net.py [seconds]` prints where the stubs listen.
    import signal
    import tempfile
    import time

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory() as tmp, stub_internet(Path(tmp)) as net:
        print(net, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
