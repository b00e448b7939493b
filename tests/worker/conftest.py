"""Real ``ua-vp worker`` processes against the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ua_vp.missions import Mission, MissionSpec
from ua_vp.store import MissionStore, open_store

AGENT = Path(__file__).with_name("mission_agent.py")
VP = "vp.general.primary"
LEASE = 15  # the smallest lease the settings allow
POLL = 1


class Workers:
    """Starts worker processes and cleans up whatever the test left alive."""

    def __init__(self, db_url: str, tmp: Path) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "UA_VP_DATABASE_URL": self.db_url,
            "UA_VP_STATE_DIR": str(self.tmp / "state"),
            "UA_VP_ENABLED_IDS": VP,
            "UA_VP_GENERAL_RUNTIME": "command",
            "UA_VP_COMMAND": f"{sys.executable} {AGENT} {{objective}}",
            "UA_VP_POLL_INTERVAL_SECONDS": str(POLL),
            "UA_VP_LEASE_TTL_SECONDS": str(LEASE),
            "UA_VP_SHUTDOWN_GRACE_SECONDS": "5",
            "UA_VP_LOG_FORMAT": "json",
            # These tests are about the worker loop: the agent runs from the checkout (hidden by
            # the sandbox) and writes pid files outside its workspace. tests/sandbox/ runs
            # workers with the sandbox on.
            "UA_VP_SANDBOX": "none",
            **extra,
        }

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "ua_vp.cli", "worker", "--profile", VP, *args],
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("worker-*.log")))

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with_signal(p, signal.SIGCONT)
                p.kill()
            p.wait(timeout=10)


def with_signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(db_url, tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def wstore(db_url: str) -> Iterator[MissionStore]:
    s = open_store(db_url, lease_ttl_seconds=LEASE)
    yield s
    s.engine.dispose()


def dispatch(store: MissionStore, objective: str, **kw: object) -> Mission:
    return store.enqueue(MissionSpec.create(vp_id=VP, objective=objective, **kw)).mission


def wait_until(
    predicate: Callable[[], object], *, timeout: float, what: str, logs: Callable[[], str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f"\n{logs()}" if logs else ""))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
