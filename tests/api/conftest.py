"""The ops API over a real database (SQLite and PostgreSQL, from the root conftest):
in-process through Litestar's TestClient, and as a real ``ua-vp serve`` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from ua_vp.api import create_app
from ua_vp.config import Settings, load_settings
from ua_vp.store import MissionStore

DISPATCH = "/api/v1/ops/vp/missions/dispatch"
MISSIONS = "/api/v1/ops/vp/missions"
SEED_BODY: dict[str, Any] = {
    "vp_id": "vp.general.primary",
    "mission_type": "task",
    "objective": "Create a concise execution checklist.",
    "constraints": {},
    "budget": {},
}
"""The body of the seed's curl, byte for byte in meaning."""

MakeClient = Callable[..., TestClient[Any]]


@pytest.fixture
def settings_for(db_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "database_url": db_url,
            "external_dispatch_enabled": True,
        }
        return load_settings(**{**base, **overrides})

    return make


@pytest.fixture
def make_client(settings_for: Callable[..., Settings], store: MissionStore) -> Iterator[MakeClient]:
    """``make_client(**settings)``: a started TestClient over the test's database."""
    clients: list[TestClient[Any]] = []

    def make(**overrides: Any) -> TestClient[Any]:
        client = TestClient(create_app(settings_for(**overrides), store=store))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient[Any]:
    return make_client()


@dataclass(frozen=True)
class Written:
    """What is in the database: compared before and after a refused request."""

    missions: int
    events: int
    sessions: int


def written(store: MissionStore) -> Written:
    return Written(
        missions=len(store.list_missions(limit=500)),
        events=len(store.recent_events(limit=10_000)),
        sessions=len(store.list_sessions()),
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and isinstance(error["details"], dict)
    assert "Traceback" not in response.text
    return dict(error)


# ---------------------------------------------------------------------------
# A real `ua-vp serve` process
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (the test fails if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_server(env_overrides: dict[str, str], tmp_path: Path, *args: str) -> Served:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update({"UA_VP_STATE_DIR": str(tmp_path / "state"), "UA_VP_LOG_FORMAT": "json", **env_overrides})
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ua_vp.cli", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,  # no stray .env from the checkout
        )
    served = Served(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ua-vp serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(served.url + "/healthz", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    served.stop()
    raise AssertionError(f"ua-vp serve did not answer /healthz in 30 s:\n{log.read_text()}")


@pytest.fixture
def serve(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(**env)``: a real server on a free port over the test's database; stopped
    with SIGTERM in teardown, where it must exit 0."""
    started: list[Served] = []

    def make(*args: str, **env: str) -> Served:
        served = start_server(
            {"UA_VP_DATABASE_URL": db_url, "UA_VP_EXTERNAL_DISPATCH_ENABLED": "1", **env}, tmp_path, *args
        )
        started.append(served)
        return served

    yield make
    for served in started:
        code = served.stop()
        assert code == 0, f"ua-vp serve exited {code} on SIGTERM:\n{served.log.read_text()}"
