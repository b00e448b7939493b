"""Helpers for running executors the way a worker does: a real MissionContext,
real subprocesses (``tests/fake_agent.py``) and a real HTTP server (``tests/fake_openai.py``)."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from ua_vp.config import Settings
from ua_vp.missions import Mission, Status
from ua_vp.profiles import Executor, MissionContext, Profile, Result

TESTS = Path(__file__).resolve().parents[1]
FAKE_AGENT = TESTS / "fake_agent.py"
FAKE_OPENAI = TESTS / "fake_openai.py"
PY = shlex.quote(sys.executable)
AGENT = f"{PY} {shlex.quote(str(FAKE_AGENT))}"
"""Command-line prefix running the fake agent, for ``UA_VP_COMMAND`` templates."""
AGENT_ARGV = [sys.executable, str(FAKE_AGENT)]


def make_mission(objective: str = "Write a haiku about queues.", **fields: Any) -> Mission:
    base: dict[str, Any] = {
        "mission_id": "m-1",
        "vp_id": "vp.test.primary",
        "mission_type": "task",
        "constraints": {},
        "budget": {},
        "status": Status.RUNNING,
        "priority": 100,
        "attempt": 1,
        "max_attempts": 3,
        "lane": "external",
    }
    return Mission(objective=objective, **{**base, **fields})


def pid_gone(pid: int, timeout: float = 3.0) -> bool:
    """Whether ``pid`` has exited within ``timeout``. An unreaped zombie counts as
    gone: orphans are reparented to PID 1, which in a container may never reap them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in (b"Z", b"X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


async def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        await asyncio.sleep(0.02)
    return path.read_text()


@dataclass
class Harness:
    tmp: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def workspace(self) -> Path:
        path = self.tmp / "workspace"
        path.mkdir(exist_ok=True)
        return path

    def settings(self, **values: Any) -> Settings:
        return Settings(_env_file=None, state_dir=self.tmp / "state", **values)  # type: ignore[call-arg]

    def profile(self, runtime: str = "dry-run") -> Profile:
        return Profile(
            vp_id="vp.test.primary",
            name="TESTER",
            description="A profile for runtime tests.",
            workspace_root=self.tmp,
            runtime=runtime,
        )

    def ctx(self, mission: Mission, settings: Settings | None = None, workspace: Path | None = None) -> MissionContext:
        return MissionContext(
            mission=mission,
            profile=self.profile(),
            settings=settings or self.settings(),
            workspace=workspace or self.workspace,
            deadline=None,
            emit=lambda kind, payload: self.events.append({"kind": kind, **payload}),
            log=structlog.get_logger("tests.runtimes"),
        )

    def run(self, executor: Executor, mission: Mission, settings: Settings | None = None) -> Result:
        return asyncio.run(executor.execute(mission, self.ctx(mission, settings)))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    def started_pid(self) -> int:
        return int(self.of_kind("process_started")[-1]["pid"])

    def fake_bin(self, name: str, *args: str) -> str:
        """An executable named ``name`` that runs the fake agent with ``args`` before its own arguments."""
        path = self.tmp / "bin" / name
        path.parent.mkdir(exist_ok=True)
        fixed = " ".join(shlex.quote(a) for a in args)
        path.write_text(f'#!/bin/sh\nexec {AGENT} {fixed} "$@"\n')
        path.chmod(0o755)
        return str(path)


@dataclass(frozen=True)
class FakeOpenAI:
    base_url: str

    def requests(self) -> list[dict[str, Any]]:
        root = self.base_url.removesuffix("/v1")
        received: list[dict[str, Any]] = httpx.get(f"{root}/requests").json()
        return received
