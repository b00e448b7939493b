"""Every read route, cancel, health and readiness, routing errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from structlog.testing import capture_logs

from tests.api.conftest import DISPATCH, MISSIONS, SEED_BODY, MakeClient, assert_error, written
from ua_vp import hookimpl
from ua_vp.api import create_app
from ua_vp.config import Settings
from ua_vp.missions import Status
from ua_vp.plugins import load_registry
from ua_vp.store import MissionStore
from ua_vp.store import db as store_db
from ua_vp.store.store import MissionStore as Store


def dispatch(client: TestClient[Any], **changes: Any) -> dict[str, Any]:
    r = client.post(DISPATCH, json={**SEED_BODY, **changes})
    assert r.status_code == 201, r.text
    return dict(r.json()["mission"])


def test_list_filters_and_orders(client: TestClient[Any], store: MissionStore) -> None:
    first = dispatch(client)
    second = dispatch(client, vp_id="vp.coder.primary", objective="Fix the bug.")
    store.request_cancel(first["mission_id"])

    listed = client.get(MISSIONS).json()["missions"]
    assert [m["mission_id"] for m in listed] == [second["mission_id"], first["mission_id"]]
    by_vp = client.get(MISSIONS, params={"vp_id": "vp.coder.primary"}).json()["missions"]
    assert [m["mission_id"] for m in by_vp] == [second["mission_id"]]
    cancelled = client.get(MISSIONS, params={"status": "cancelled"}).json()["missions"]
    assert [m["status"] for m in cancelled] == ["cancelled"]
    both = client.get(MISSIONS, params={"status": "queued,cancelled", "limit": 1}).json()["missions"]
    assert len(both) == 1
    assert len(client.get(MISSIONS, params={"status": "all", "limit": 500}).json()["missions"]) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"status": "queued,nope"}, "status"),
        ({"vp_id": "a\x00b"}, "vp_id"),
    ],
)
def test_list_rejects_bad_query(client: TestClient[Any], params: dict[str, Any], field: str) -> None:
    error = assert_error(client.get(MISSIONS, params=params), 400, "invalid_request")
    assert error["details"]["field"] == field
    assert field in error["message"]


def test_show_and_events(client: TestClient[Any], store: MissionStore) -> None:
    mission = dispatch(client)
    mid = mission["mission_id"]
    shown = client.get(f"{MISSIONS}/{mid}").json()["mission"]
    assert shown == mission

    [claimed] = store.claim("vp.general.primary", "w-1")
    assert claimed.lease_token is not None
    store.finalize(mid, claimed.lease_token, Status.COMPLETED, result={"summary": "done"})
    events = client.get(f"{MISSIONS}/{mid}/events").json()["events"]
    assert [e["event_type"] for e in events] == ["vp.mission.dispatched", "vp.mission.started", "vp.mission.completed"]
    assert all(e["mission_id"] == mid for e in events)
    after = client.get(f"{MISSIONS}/{mid}/events", params={"after_id": events[0]["id"]}).json()["events"]
    assert after == events[1:]
    assert client.get(f"{MISSIONS}/{mid}").json()["mission"]["result"] == {"summary": "done"}
    error = assert_error(client.get(f"{MISSIONS}/{mid}/events", params={"after_id": -1}), 400, "invalid_request")
    assert error["details"]["field"] == "after_id"


def test_cancel(client: TestClient[Any], store: MissionStore) -> None:
    queued = dispatch(client)
    r = client.post(f"{MISSIONS}/{queued['mission_id']}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["changed"] is True and r.json()["mission"]["status"] == "cancelled"
    again = client.post(f"{MISSIONS}/{queued['mission_id']}/cancel")
    assert again.status_code == 202 and again.json()["changed"] is False

    running = dispatch(client, objective="long one")
    store.claim("vp.general.primary", "w-1")
    r = client.post(f"{MISSIONS}/{running['mission_id']}/cancel")
    assert r.status_code == 202 and r.json()["changed"] is True
    assert r.json()["mission"]["status"] == "running" and r.json()["mission"]["cancel_requested_at"]


@pytest.mark.parametrize("mission_id", ["vpm_missing", "x" * 300, "a%00b"])
def test_unknown_mission_is_404_everywhere(client: TestClient[Any], store: MissionStore, mission_id: str) -> None:
    dispatch(client)
    before = written(store)
    assert_error(client.get(f"{MISSIONS}/{mission_id}"), 404, "mission_not_found")
    assert_error(client.get(f"{MISSIONS}/{mission_id}/events"), 404, "mission_not_found")
    assert_error(client.get(f"{MISSIONS}/{mission_id}/events?stream=1"), 404, "mission_not_found")
    assert_error(client.post(f"{MISSIONS}/{mission_id}/cancel"), 404, "mission_not_found")
    assert written(store) == before


def test_sessions(client: TestClient[Any], store: MissionStore) -> None:
    store.register_session(worker_id="w-general", vp_id="vp.general.primary", capacity=2, lane="external")
    store.register_session(worker_id="w-coder", vp_id="vp.coder.primary", capacity=1, lane="external")
    everyone = client.get("/api/v1/ops/vp/sessions").json()["sessions"]
    assert {s["worker_id"] for s in everyone} == {"w-general", "w-coder"}
    coder = client.get("/api/v1/ops/vp/sessions", params={"vp_id": "vp.coder.primary"}).json()["sessions"]
    assert [(s["worker_id"], s["status"], s["capacity"]) for s in coder] == [("w-coder", "idle", 1)]


def test_metrics_and_compat_routes(client: TestClient[Any]) -> None:
    dispatch(client)
    dispatch(client, vp_id="vp.coder.primary")
    everything = client.get("/api/v1/ops/metrics/vp").json()["metrics"]
    assert everything["missions"]["total"] == 2 and everything["queue"]["depth"] == 2
    general = client.get("/api/v1/ops/metrics/vp", params={"vp_id": "vp.general.primary"}).json()["metrics"]
    assert general["vp_id"] == "vp.general.primary" and general["missions"]["total"] == 1
    coder = client.get("/api/v1/ops/metrics/coder-vp").json()["metrics"]
    assert coder["vp_id"] == "vp.coder.primary" and coder["missions"]["total"] == 1
    dashboard = client.get("/api/v1/dashboard/metrics/coder-vp").json()
    assert dashboard["status"] == "ok" and dashboard["metrics"]["missions"] == coder["missions"]


def test_health_readiness_and_routing_errors(client: TestClient[Any]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["revision"] == store_db.head_revision()
    assert_error(client.get("/api/v1/ops/nothing-here"), 404, "not_found")
    assert_error(client.delete(f"{MISSIONS}/dispatch"), 405, "method_not_allowed")
    assert_error(client.get(DISPATCH), 405, "method_not_allowed")
    schema = client.get("/schema/openapi.json").json()
    operation_ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"dispatchMission", "cancelMission", "listMissions", "getMission", "listMissionEvents"} <= operation_ids
    assert client.get("/schema").status_code == 200


def test_readyz_is_503_on_an_unmigrated_database(settings_for: Any, tmp_path: Path) -> None:
    empty = Store(store_db.make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    settings: Settings = settings_for()
    with TestClient(create_app(settings, store=empty)) as client:
        assert client.get("/healthz").status_code == 200
        error = assert_error(client.get("/readyz"), 503, "database_not_migrated")
        assert "ua-vp db upgrade" in error["message"]


def test_readyz_is_503_when_the_database_is_down(settings_for: Any) -> None:
    # Nothing listens on port 9: the connection is refused at once.
    down = Store(store_db.make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none"))
    with TestClient(create_app(settings_for(), store=down)) as client:
        assert_error(client.get("/readyz"), 503, "database_unavailable")
        assert_error(client.get(MISSIONS), 503, "database_unavailable")


def test_lanes_start_and_stop_with_the_app(make_client: MakeClient, settings_for: Any, store: MissionStore) -> None:
    class RecordingLane:
        """Stands in for ua_vp.worker.InProcessLane: the interface the lifespan drives."""

        def __init__(self) -> None:
            self.calls: list[str] = []

        async def start(self) -> None:
            self.calls.append("start")

        async def stop(self) -> None:
            self.calls.append("stop")

        def wake(self, vp_id: str) -> None:
            self.calls.append(f"wake:{vp_id}")

    lane = RecordingLane()
    app = create_app(settings_for(external_dispatch_enabled=False), store=store, lanes=[lane])
    with TestClient(app) as client:
        assert lane.calls == ["start"]
        dispatch(client)
        # An idempotent replay creates nothing, so it rings nobody.
        dispatch(client, idempotency_key="k")
        assert client.post(DISPATCH, json={**SEED_BODY, "idempotency_key": "k"}).status_code == 200
    assert lane.calls == ["start", "wake:vp.general.primary", "wake:vp.general.primary", "stop"]

    external = RecordingLane()
    with TestClient(create_app(settings_for(external_dispatch_enabled=True), store=store, lanes=[external])):
        pass
    assert external.calls == []


class BrokenPlugin:
    """A third-party plugin with a bug: its dispatch-time check crashes."""

    @hookimpl
    def ua_vp_check_mission(self, profile: Any, mission: Any, phase: str) -> None:
        raise RuntimeError("plugin bug: secret internals /srv/app.py line 3")


def test_an_unexpected_error_is_a_bare_500(settings_for: Any, store: MissionStore) -> None:
    settings = settings_for()
    registry = load_registry(settings, extra_plugins=[BrokenPlugin()])
    before = written(store)
    with TestClient(create_app(settings, store=store, registry=registry)) as client, capture_logs() as logs:
        error = assert_error(client.post(DISPATCH, json=SEED_BODY), 500, "internal_error")
    assert "plugin bug" not in error["message"] and error["details"] == {}
    assert any(e["event"] == "unhandled_error" and e["error_type"] == "RuntimeError" for e in logs)
    assert written(store) == before
