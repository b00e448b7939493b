"""A real ``ua-vp serve`` process over real HTTP: every route, the seed's curl,
SSE delivered as it happens, the bind refusal, and exit 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.api.conftest import DISPATCH, MISSIONS, SEED_BODY, Served, free_port
from tests.api.test_sse import parse_sse
from ua_vp.missions import Status
from ua_vp.store import MissionStore

Serve = Callable[..., Served]
SEED_CURL_BODY = (
    '{"vp_id":"vp.general.primary","mission_type":"task","objective":"Create a concise execution checklist.",'
    '"constraints":{},"budget":{}}'
)


def test_every_route_over_http(serve: Serve, store: MissionStore) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        # The seed's curl, as sent: same headers, same bytes.
        r = http.post(DISPATCH, content=SEED_CURL_BODY, headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        assert r.json()["lane"] == "external" and r.json()["created"] is True
        mid = r.json()["mission"]["mission_id"]
        assert store.get(mid).status is Status.QUEUED

        keyed = {**SEED_BODY, "idempotency_key": "http-key"}
        assert http.post(DISPATCH, json=keyed).status_code == 201
        assert http.post(DISPATCH, json=keyed).status_code == 200
        assert http.post(DISPATCH, json={**keyed, "objective": "other"}).json()["error"]["code"] == (
            "idempotency_conflict"
        )

        assert [m["mission_id"] for m in http.get(MISSIONS, params={"limit": 1}).json()["missions"]] != [mid]
        assert http.get(f"{MISSIONS}/{mid}").json()["mission"]["mission_id"] == mid
        assert http.get(f"{MISSIONS}/{mid}/events").json()["events"][0]["event_type"] == "vp.mission.dispatched"
        assert http.get("/api/v1/ops/vp/sessions").json() == {"sessions": []}
        assert http.get("/api/v1/ops/metrics/vp").json()["metrics"]["queue"]["depth"] == 2
        assert http.get("/api/v1/ops/metrics/coder-vp").json()["metrics"]["vp_id"] == "vp.coder.primary"
        assert http.get("/api/v1/dashboard/metrics/coder-vp").json()["status"] == "ok"
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json()["status"] == "ready"
        assert "dispatchMission" in http.get("/schema/openapi.json").text

        r = http.post(f"{MISSIONS}/{mid}/cancel")
        assert r.status_code == 202 and r.json()["mission"]["status"] == "cancelled"

        for response, status, code in [
            (
                http.post(DISPATCH, content="{nope", headers={"Content-Type": "application/json"}),
                400,
                "invalid_request",
            ),
            (http.post(DISPATCH, json={"vp_id": "vp.general.primary"}), 400, "invalid_request"),
            (http.post(DISPATCH, json={**SEED_BODY, "vp_id": "vp.ghost"}), 422, "unknown_vp_id"),
            (
                http.post(DISPATCH, content=b"x" * 1_100_000, headers={"Content-Type": "application/json"}),
                413,
                "request_too_large",
            ),
            (http.get(MISSIONS, params={"limit": 501}), 400, "invalid_request"),
            (http.get(f"{MISSIONS}/vpm_nope"), 404, "mission_not_found"),
            (http.get("/api/v1/nowhere"), 404, "not_found"),
            (http.put(DISPATCH), 405, "method_not_allowed"),
        ]:
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
    assert len(store.list_missions()) == 2  # no refused request wrote anything


def test_sse_over_http_arrives_as_it_happens(serve: Serve, store: MissionStore) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        mid = http.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
        with http.stream("GET", f"{MISSIONS}/{mid}/events", headers={"Accept": "text/event-stream"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            first = parse_sse(_until_blank(lines))
            # Received while the mission is still queued: the stream is live, not buffered.
            assert [m["event"] for m in first] == ["vp.mission.dispatched"]
            [mission] = store.claim("vp.general.primary", "w-http")
            assert mission.lease_token is not None
            store.finalize(mid, mission.lease_token, Status.FAILED, error={"code": "boom", "message": "x"})
            rest = parse_sse(lines)  # ends when the server closes the stream
    assert [m["event"] for m in rest] == ["vp.mission.started", "vp.mission.failed"]
    assert rest[-1]["data"]["payload"]["error"]["code"] == "boom"


def _until_blank(lines: object) -> list[str]:
    out = []
    for line in lines:  # type: ignore[attr-defined]
        out.append(line)
        if not line:
            return out
    return out


def test_token_is_required_over_http(serve: Serve) -> None:
    served = serve(UA_VP_OPS_TOKEN="http-token")
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.post(DISPATCH, json=SEED_BODY).status_code == 401
        ok = http.post(DISPATCH, json=SEED_BODY, headers={"Authorization": "Bearer http-token"})
        assert ok.status_code == 201
        assert http.get("/healthz").status_code == 200


def test_unauthenticated_loopback_warns_in_the_log(serve: Serve) -> None:
    served = serve()
    assert served.stop() == 0
    logged = [json.loads(line) for line in served.log.read_text().splitlines() if line.startswith("{")]
    assert any(entry.get("event") == "ops_api_unauthenticated" for entry in logged)


def test_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env["UA_VP_STATE_DIR"] = str(tmp_path / "state")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "error [config_invalid]" in done.stderr
    assert "UA_VP_OPS_TOKEN" in done.stderr and "UA_VP_ALLOW_UNAUTHENTICATED_BIND" in done.stderr
    assert time.monotonic() - started < 30


def test_sigterm_ends_open_event_streams_and_exits_0(serve: Serve) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        mid = http.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
        with http.stream("GET", f"{MISSIONS}/{mid}/events", headers={"Accept": "text/event-stream"}) as r:
            lines = r.iter_lines()
            assert parse_sse(_until_blank(lines))[0]["event"] == "vp.mission.dispatched"
            started = time.monotonic()
            # The mission never ends: only the shutdown can end this stream.
            served.process.send_signal(signal.SIGTERM)
            assert list(lines) == []  # the server closed the stream cleanly
        assert served.stop(timeout=10) == 0
    # Well inside uvicorn's grace period: the stream did not hold the shutdown up.
    assert time.monotonic() - started < 4
    logged = served.log.read_text()
    assert "ops_api_stopped" in logged and "ops_api_exited" in logged
    assert "Traceback" not in logged
