"""POST /api/v1/ops/vp/missions/dispatch: created, replayed, refused, and nothing
written on any refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import TestClient

import ua_vp
from tests.api.conftest import DISPATCH, SEED_BODY, MakeClient, assert_error, written
from ua_vp.store import MissionStore


def test_seed_curl_body_dispatches(client: TestClient[Any], store: MissionStore) -> None:
    # The seed's curl sends exactly this body with Content-Type: application/json.
    r = client.post(DISPATCH, content=json.dumps(SEED_BODY), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True and body["lane"] == "external"
    mission = body["mission"]
    assert mission["status"] == "queued" and mission["vp_id"] == "vp.general.primary"
    assert "lease_token" not in mission
    assert store.get(mission["mission_id"]).objective == SEED_BODY["objective"]
    assert [e.event_type for e in store.events(mission["mission_id"])] == ["vp.mission.dispatched"]


def test_in_process_lane_is_named_when_external_dispatch_is_off(make_client: MakeClient) -> None:
    client = make_client(external_dispatch_enabled=False)
    r = client.post(DISPATCH, json=SEED_BODY)
    assert r.status_code == 201 and r.json()["lane"] == "in_process"


def test_every_optional_field_is_stored(client: TestClient[Any], store: MissionStore) -> None:
    body = {
        **SEED_BODY,
        "mission_type": "research",
        "constraints": {"notes": ["a", 1, None]},
        "budget": {"max_seconds": 30, "max_tokens": 1000},
        "idempotency_key": "k-1",
        "priority": 0,
        "source_session_id": "s-1",
        "source_turn_id": "t-1",
        "reply_mode": "sync",
        "run_id": "r-1",
    }
    r = client.post(DISPATCH, json=body)
    assert r.status_code == 201, r.text
    stored = store.get(r.json()["mission"]["mission_id"])
    for key, value in body.items():
        assert getattr(stored, key) == value, key


def test_idempotent_replay_is_200_and_writes_nothing(client: TestClient[Any], store: MissionStore) -> None:
    body = {**SEED_BODY, "idempotency_key": "same-key"}
    first = client.post(DISPATCH, json=body)
    assert first.status_code == 201
    before = written(store)
    again = client.post(DISPATCH, json=body)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["mission"]["mission_id"] == first.json()["mission"]["mission_id"]
    assert written(store) == before


def test_idempotency_conflict_is_409(client: TestClient[Any], store: MissionStore) -> None:
    first = client.post(DISPATCH, json={**SEED_BODY, "idempotency_key": "k"})
    before = written(store)
    r = client.post(DISPATCH, json={**SEED_BODY, "idempotency_key": "k", "objective": "something else"})
    error = assert_error(r, 409, "idempotency_conflict")
    assert first.json()["mission"]["mission_id"] not in r.text  # the key may be another caller's (L5)
    assert error["details"] == {"vp_id": SEED_BODY["vp_id"]}
    assert written(store) == before


def test_unknown_vp_id_is_422_listing_ids(client: TestClient[Any], store: MissionStore) -> None:
    before = written(store)
    error = assert_error(client.post(DISPATCH, json={**SEED_BODY, "vp_id": "vp.nope"}), 422, "unknown_vp_id")
    assert "vp.general.primary" in error["details"]["installed"]
    assert {"vp.coder.primary", "vp.general.primary"} <= set(error["details"]["enabled"])
    assert written(store) == before


def test_disabled_vp_id_is_422_listing_ids(make_client: MakeClient, store: MissionStore) -> None:
    client = make_client(enabled_ids="vp.general.primary")
    before = written(store)
    r = client.post(DISPATCH, json={**SEED_BODY, "vp_id": "vp.coder.primary"})
    error = assert_error(r, 422, "vp_id_disabled")
    assert error["details"]["enabled"] == ["vp.general.primary"]
    assert "vp.coder.primary" in error["details"]["installed"]
    assert "UA_VP_ENABLED_IDS" in error["message"]
    assert written(store) == before


def test_guard_violation_is_403(client: TestClient[Any], store: MissionStore) -> None:
    own_package = str(ua_vp.__file__).rsplit("/", 1)[0]
    before = written(store)
    r = client.post(
        DISPATCH, json={**SEED_BODY, "vp_id": "vp.coder.primary", "constraints": {"repo_path": own_package}}
    )
    error = assert_error(r, 403, "guard_violation")
    assert error["details"]["rule"] == "protected_root"
    r = client.post(DISPATCH, json={**SEED_BODY, "constraints": {"path": "/etc"}})
    assert assert_error(r, 403, "guard_violation")["details"]["rule"] == "outside_allowed_roots"
    assert written(store) == before


BAD_BODIES = [
    pytest.param('{"vp_id": "vp.general.primary", "objective": ', None, id="malformed-json"),
    pytest.param("[]", None, id="not-an-object"),
    pytest.param({"vp_id": 7, "objective": "x"}, "vp_id", id="wrong-type"),
    pytest.param({**SEED_BODY, "priority": "high"}, "priority", id="wrong-type-priority"),
    pytest.param({"vp_id": "vp.general.primary"}, "objective", id="missing-objective"),
    pytest.param({**SEED_BODY, "objective": ""}, "objective", id="empty-objective"),
    pytest.param({**SEED_BODY, "objective": "   "}, "objective", id="blank-objective"),
    pytest.param({**SEED_BODY, "objectve": "typo"}, "objectve", id="unknown-field"),
    pytest.param({**SEED_BODY, "priority": 1001}, "priority", id="priority-out-of-range"),
    pytest.param({**SEED_BODY, "reply_mode": "later"}, "reply_mode", id="bad-reply-mode"),
    pytest.param({**SEED_BODY, "budget": {"max_dollars": 5}}, "budget", id="unknown-budget-key"),
    pytest.param({**SEED_BODY, "budget": {"max_seconds": -1}}, "budget", id="negative-budget"),
    pytest.param({**SEED_BODY, "constraints": []}, "constraints", id="constraints-not-object"),
    pytest.param({**SEED_BODY, "constraints": {"note": "a\u0000b"}}, "constraints", id="nul-in-json"),
    pytest.param({**SEED_BODY, "objective": "a\u0000b"}, "objective", id="nul-in-text"),
    pytest.param({**SEED_BODY, "mission_type": "poetry"}, "mission_type", id="type-not-taken"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_body_is_400_naming_the_field(
    client: TestClient[Any], store: MissionStore, body: Any, field: str | None
) -> None:
    before = written(store)
    content = body if isinstance(body, str) else json.dumps(body)
    r = client.post(DISPATCH, content=content, headers={"Content-Type": "application/json"})
    error = assert_error(r, 400, "invalid_request")
    if field is not None:
        assert error["details"].get("field") == field, error
        assert field in error["message"]
    else:
        assert "JSON" in error["message"] or "object" in error["message"]
    assert written(store) == before


def test_oversize_body_is_413(make_client: MakeClient, store: MissionStore) -> None:
    client = make_client(max_request_bytes=2048)
    before = written(store)
    r = client.post(DISPATCH, json={**SEED_BODY, "objective": "x" * 4096})
    error = assert_error(r, 413, "request_too_large")
    assert error["details"]["max_bytes"] == 2048
    assert written(store) == before
    # Just under the limit is fine.
    assert client.post(DISPATCH, json={**SEED_BODY, "objective": "x" * 1500}).status_code == 201


def test_oversize_body_without_content_length_is_413(make_client: MakeClient) -> None:
    client = make_client(max_request_bytes=2048)

    def chunks() -> Any:
        yield b'{"vp_id": "vp.general.primary", "objective": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    r = client.post(DISPATCH, content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "request_too_large")


@pytest.mark.parametrize("network", ["disabled", "0", "blocked", {"enabled": False}, 0, 1, [], ""])
def test_an_unknown_network_spelling_is_refused_never_run_connected(
    client: TestClient[Any], store: MissionStore, network: Any
) -> None:
    # M2: these used to leave the network on.
    before = written(store)
    r = client.post(DISPATCH, json={**SEED_BODY, "constraints": {"network": network}})
    error = assert_error(r, 400, "invalid_constraint")
    assert "constraints.network" in error["message"] and "'off'" in error["message"]
    assert written(store) == before


@pytest.mark.parametrize(("network", "allowed"), [(False, False), (" OFF", False), ("deny", False), ("on", True)])
def test_the_documented_network_spellings_are_accepted(
    client: TestClient[Any], store: MissionStore, network: Any, allowed: bool
) -> None:
    from ua_vp.sandbox import network_allowed

    r = client.post(DISPATCH, json={**SEED_BODY, "constraints": {"network": network}})
    assert r.status_code == 201, r.text
    assert network_allowed(store.get(r.json()["mission"]["mission_id"]).constraints) is allowed
