"""Progress is never lost at a mission's end: a batch still on its way to the database when
the agent exits lands before the finalize (which would refuse it), in the order it was made."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from typing import Any

import pytest

from ua_vp.store import MissionStore
from ua_vp.testing import RunMission

AGENT = "import time\nfor n in range(20): print('early', n, flush=True)\ntime.sleep(0.8)\nprint('last', flush=True)"


@pytest.fixture
def ua_vp_enabled_ids() -> list[str]:
    return ["vp.general.primary"]


@pytest.fixture(autouse=True)
def agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UA_VP_GENERAL_RUNTIME", "command")
    monkeypatch.setenv("UA_VP_COMMAND", f"{shlex.quote(sys.executable)} -c {shlex.quote(AGENT)}")
    monkeypatch.setenv("UA_VP_SANDBOX", "none")


def test_a_batch_in_flight_when_the_agent_exits_lands_before_the_finalize(
    run_mission: RunMission, ua_vp_store: MissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first write of progress is slow (a busy database): the agent exits while it is on its way.
    write = ua_vp_store.add_progress
    first = threading.Event()

    def slow_first(*args: Any, **kwargs: Any) -> bool:
        if not first.is_set():
            first.set()
            time.sleep(1.5)
        return write(*args, **kwargs)

    monkeypatch.setattr(ua_vp_store, "add_progress", slow_first)

    mission, events = run_mission("vp.general.primary", "print twenty lines, wait, print one more")

    assert mission.status == "completed", mission.error
    assert first.is_set()
    lines = [e.payload["line"] for e in events if e.payload.get("kind") == "output"]
    assert lines == [f"early {n}" for n in range(20)] + ["last"]
    assert events[-1].event_type == "vp.mission.completed"
