"""The caller's OS user, as the kernel reports it: sock_diag, and the /proc/net/tcp
fallback used where netlink is refused (a locked-down container), on real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ua_vp.api import peers

ASKERS = {
    "sock_diag": peers._ask_netlink,
    "/proc/net/tcp": lambda family, src, sport, dst, dport: peers._search_proc(family, src, sport, dst, dport),
}


@pytest.fixture(params=["127.0.0.1", "::1"])
def listener(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in request.param else socket.AF_INET
    with socket.socket(family) as server:
        try:
            server.bind((request.param, 0))
        except OSError:
            pytest.skip(f"no {request.param} on this machine")
        server.listen()
        yield server


def ask(asker: str, client: tuple[str, int], server: tuple[str, int]) -> int | None:
    family, src = peers._address(client[0])
    _, dst = peers._address(server[0])
    return ASKERS[asker](family, src, client[1], dst, server[1])


@pytest.mark.parametrize("asker", ASKERS)
def test_both_ways_name_the_owner_of_the_client_end(listener: socket.socket, asker: str) -> None:
    with socket.create_connection(listener.getsockname()[:2]) as client:
        accepted, _ = listener.accept()
        with accepted:
            assert ask(asker, client.getsockname()[:2], listener.getsockname()[:2]) == os.geteuid()
            # A pair with no socket on this host (a remote peer's, say) has no owner to name.
            assert ask(asker, (client.getsockname()[0], 1), listener.getsockname()[:2]) is None


@pytest.mark.parametrize("asker", ASKERS)
def test_both_ways_name_another_users_connection_as_theirs(listener: socket.socket, asker: str) -> None:
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"):
        pytest.skip("needs root and setpriv to connect as another OS user")
    host, port = listener.getsockname()[:2]
    code = (
        "import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])));"
        "print(*s.getsockname()[:2], flush=True); sys.stdin.read()"
    )
    nobody = subprocess.Popen(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-I",
            "-c",
            code,
            host,
            str(port),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert nobody.stdout is not None
        client_host, client_port = nobody.stdout.readline().split()
        accepted, _ = listener.accept()
        with accepted:
            assert ask(asker, (client_host, int(client_port)), (host, port)) == 65534
    finally:
        nobody.communicate(timeout=10)
