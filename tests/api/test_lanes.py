"""Gateway routing over a real server: the in-process lane runs missions by default;
with external dispatch on they wait for a real ``ua-vp worker``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.api.conftest import DISPATCH, Served
from tests.api.test_server import SEED_CURL_BODY
from tests.api.test_sse import parse_sse

Serve = Callable[..., Served]


def follow(served: Served, mission_id: str) -> list[str]:
    url = f"{served.url}/api/v1/ops/vp/missions/{mission_id}/events"
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=30) as r:
        return [e["event"] for e in parse_sse(r.iter_lines()) if "event" in e]


def test_the_seed_curl_completes_through_the_in_process_lane(serve: Serve) -> None:
    served = serve(UA_VP_EXTERNAL_DISPATCH_ENABLED="0")
    r = httpx.post(served.url + DISPATCH, content=SEED_CURL_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["lane"] == "in_process"
    mission_id = r.json()["mission"]["mission_id"]

    kinds = follow(served, mission_id)  # the stream closes when the mission ends
    assert kinds[:2] == ["vp.mission.dispatched", "vp.mission.started"]
    assert kinds[-1] == "vp.mission.completed" and "vp.mission.progress" in kinds

    mission = httpx.get(f"{served.url}/api/v1/ops/vp/missions/{mission_id}").json()["mission"]
    assert mission["status"] == "completed" and mission["lane"] == "in_process"
    assert mission["result"]["model_ran"] is False and "no model ran" in mission["result"]["summary"]
    sessions = httpx.get(f"{served.url}/api/v1/ops/vp/sessions").json()["sessions"]
    assert {s["lane"] for s in sessions} == {"in_process"}
    assert {s["vp_id"] for s in sessions} >= {"vp.coder.primary", "vp.general.primary"}


def test_with_external_dispatch_the_mission_waits_for_a_real_worker(serve: Serve, db_url: str, tmp_path: Path) -> None:
    served = serve(UA_VP_EXTERNAL_DISPATCH_ENABLED="1", UA_VP_DISPATCH_MODE="db_pull")
    r = httpx.post(served.url + DISPATCH, content=SEED_CURL_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 201 and r.json()["lane"] == "external"
    mission_id = r.json()["mission"]["mission_id"]
    time.sleep(1.5)
    get = f"{served.url}/api/v1/ops/vp/missions/{mission_id}"
    assert httpx.get(get).json()["mission"]["status"] == "queued"

    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update({"UA_VP_DATABASE_URL": db_url, "UA_VP_STATE_DIR": str(tmp_path / "worker-state")})
    worker = subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", "worker", "--profile", "vp.general.primary", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr.decode()
    mission = httpx.get(get).json()["mission"]
    assert mission["status"] == "completed", json.dumps(mission)
    assert mission["worker_id"].startswith("vp.general.primary@")


def test_cancel_over_http_stops_an_in_process_mission_at_once(serve: Serve, tmp_path: Path) -> None:
    from tests.worker.conftest import AGENT, pid_alive, wait_until

    served = serve(
        UA_VP_EXTERNAL_DISPATCH_ENABLED="0",
        UA_VP_GENERAL_RUNTIME="command",
        UA_VP_COMMAND=f"{sys.executable} {AGENT} {{objective}}",
        # The agent runs from the checkout and writes its pid outside the workspace: unsandboxed on purpose.
        UA_VP_SANDBOX="none",
    )
    pidfile = tmp_path / "agent.pid"
    body = {"vp_id": "vp.general.primary", "objective": f"pid:{pidfile} sleep:120"}
    mission_id = httpx.post(served.url + DISPATCH, json=body).json()["mission"]["mission_id"]
    wait_until(pidfile.exists, timeout=20, what="the agent to start", logs=served.log.read_text)
    pid = int(pidfile.read_text())

    asked = time.monotonic()
    r = httpx.post(f"{served.url}/api/v1/ops/vp/missions/{mission_id}/cancel")
    assert r.status_code == 202 and r.json()["changed"] is True
    kinds = follow(served, mission_id)
    took = time.monotonic() - asked
    assert kinds[-1] == "vp.mission.cancelled"
    wait_until(lambda: not pid_alive(pid), timeout=3, what="the agent to be killed")
    # No heartbeat (TTL/3 = 40 s by default) was needed: the gateway rang the lane directly.
    assert took < 5, f"cancel took {took:.1f} s"
