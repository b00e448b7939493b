"""Issue 11, item 2: a local model proxy on the host's loopback, reachable through an explicit
allow-list of ports (``UA_VP_SANDBOX_LOOPBACK_PORTS``), and nothing else of the host's loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ua_vp.config import load_settings
from ua_vp.errors import ConfigError

from .conftest import Scene

MIB = 1024 * 1024


def _echo(conn: socket.socket) -> None:
    with conn:
        while chunk := conn.recv(65536):
            conn.sendall(chunk)


def _serve(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return  # closed by the fixture
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


@pytest.fixture
def echo_ports() -> Iterator[tuple[int, int, int]]:
    """Three echo servers on the host's 127.0.0.1: a model proxy, another service, the ops API."""
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    for server in servers:
        threading.Thread(target=_serve, args=(server,), daemon=True).start()
    yield tuple(server.getsockname()[1] for server in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown(socket.SHUT_RDWR)
        server.close()


def test_a_listed_port_reaches_the_host_and_no_other_does(
    scene: Scene, backend: str, echo_ports: tuple[int, int, int]
) -> None:
    proxy, other, ops = echo_ports
    box = scene.sandbox(sandbox=backend, sandbox_loopback_ports=[proxy], port=ops)

    report, proc = scene.run(
        box,
        [
            ["echo", "127.0.0.1", proxy, MIB],
            ["echo", "127.0.0.1", proxy, 0],  # a connection that only half-closes
            ["connect", "127.0.0.1", other],
            ["connect", "127.0.0.1", ops],
            ["connect", "10.0.2.2", proxy],  # slirp's alias of the host's loopback stays shut
        ],
    )

    assert proc.exit_code == 0, proc.stderr_tail
    big, empty, *refused = report
    assert big["ok"] and big["result"]["same"] and big["result"]["bytes"] == MIB, big
    assert empty["ok"] and empty["result"]["bytes"] == 0, empty
    assert [line["ok"] for line in refused] == [False, False, False], refused
    (event,) = scene.of_kind("sandbox")
    assert event["loopback_ports"] == [proxy]


def test_without_the_setting_no_host_loopback_port_answers(
    scene: Scene, backend: str, echo_ports: tuple[int, int, int]
) -> None:
    proxy, _, ops = echo_ports
    report, proc = scene.run(
        scene.sandbox(sandbox=backend, port=ops),
        [["connect", "127.0.0.1", proxy], ["connect", "127.0.0.1", ops]],
    )
    assert proc.exit_code == 0, proc.stderr_tail
    assert [line["ok"] for line in report] == [False, False], report
    assert scene.of_kind("sandbox")[0]["loopback_ports"] == []


def test_a_mission_without_network_gets_no_loopback_port(
    scene: Scene, backend: str, echo_ports: tuple[int, int, int]
) -> None:
    proxy = echo_ports[0]
    report, proc = scene.run(
        scene.sandbox(sandbox=backend, sandbox_loopback_ports=[proxy]),
        [["connect", "127.0.0.1", proxy]],
        constraints={"network": False},
    )
    assert proc.exit_code == 0, proc.stderr_tail
    assert not report[0]["ok"], report
    assert scene.of_kind("sandbox")[0]["loopback_ports"] == []


def test_the_relay_ends_with_the_mission(scene: Scene, backend: str, echo_ports: tuple[int, int, int]) -> None:
    """No listener, no connection and no helper outlives the mission in the worker."""
    import os

    def open_fds() -> set[str]:
        return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if _exists(fd)}

    proxy = echo_ports[0]
    before = open_fds()
    report, proc = scene.run(
        scene.sandbox(sandbox=backend, sandbox_loopback_ports=[proxy]), [["echo", "127.0.0.1", proxy, 1000]]
    )
    assert proc.exit_code == 0 and report[0]["ok"], (report, proc.stderr_tail)
    leaked = {fd for fd in open_fds() - before if fd.startswith("socket:")}
    assert not leaked, leaked


def _exists(fd: str) -> bool:
    import os

    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"UA_VP_SANDBOX_LOOPBACK_PORTS": "4000,8002"}, "may not hold port 8002: it is the ops API's (UA_VP_PORT)"),
        ({"UA_VP_SANDBOX_LOOPBACK_PORTS": "4000", "UA_VP_PORT": "4000"}, "may not hold port 4000"),
        (
            {"UA_VP_SANDBOX_LOOPBACK_PORTS": "9000", "UA_VP_API_URL": "http://localhost:9000"},
            "may not hold port 9000: it is the ops API's (UA_VP_API_URL)",
        ),
        (
            {"UA_VP_SANDBOX_LOOPBACK_PORTS": "5432", "UA_VP_DATABASE_URL": "postgresql://u:p@127.0.0.1/ua"},
            "may not hold port 5432: it is the database's (UA_VP_DATABASE_URL)",
        ),
        (
            {"UA_VP_SANDBOX_LOOPBACK_PORTS": "6543", "UA_VP_DATABASE_URL": "postgresql://u:p@[::1]:6543/ua"},
            "may not hold port 6543: it is the database's",
        ),
        ({"UA_VP_SANDBOX_LOOPBACK_PORTS": "0"}, "'0' is not a TCP port (1-65535)"),
        ({"UA_VP_SANDBOX_LOOPBACK_PORTS": "11434,70000"}, "'70000' is not a TCP port"),
        ({"UA_VP_SANDBOX_LOOPBACK_PORTS": "ollama"}, "'ollama' is not a TCP port"),
    ],
)
def test_a_bad_loopback_port_list_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], says: str
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert "UA_VP_SANDBOX_LOOPBACK_PORTS" in info.value.message
    assert says in info.value.message


def test_loopback_ports_parse_and_spare_remote_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UA_VP_SANDBOX_LOOPBACK_PORTS", " 11434, 4000,,4000 ")
    monkeypatch.setenv("UA_VP_DATABASE_URL", "postgresql://u:p@db.internal:4000/ua")  # not on this loopback
    assert load_settings(_env_file=None).sandbox_loopback_ports == [4000, 11434]
    assert load_settings(_env_file=None, sandbox_loopback_ports="").sandbox_loopback_ports == []


def test_serve_refuses_a_port_missions_may_reach() -> None:
    from ua_vp.api import server

    settings = load_settings(_env_file=None, sandbox_loopback_ports="4000")
    with pytest.raises(ConfigError, match="refusing to serve the ops API on port 4000"):
        server.run(settings, port=4000)
