"""UA_VP_OPS_TOKEN: every /api/v1/ops and /api/v1/dashboard route needs the bearer
token; health, readiness and the schema stay open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import DISPATCH, MISSIONS, SEED_BODY, MakeClient, assert_error, written
from ua_vp.api.server import check_bind, is_loopback
from ua_vp.config import Settings, load_settings
from ua_vp.errors import ConfigError
from ua_vp.store import MissionStore

TOKEN = "s3cret-token"
PROTECTED = [
    ("POST", DISPATCH),
    ("POST", f"{MISSIONS}/vpm_x/cancel"),
    ("GET", MISSIONS),
    ("GET", f"{MISSIONS}/vpm_x"),
    ("GET", f"{MISSIONS}/vpm_x/events"),
    ("GET", "/api/v1/ops/vp/sessions"),
    ("GET", "/api/v1/ops/metrics/vp"),
    ("GET", "/api/v1/ops/metrics/coder-vp"),
    ("GET", "/api/v1/dashboard/metrics/coder-vp"),
]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
)
def test_missing_or_wrong_token_is_401_everywhere(
    make_client: MakeClient, store: MissionStore, authorization: str | None
) -> None:
    client = make_client(ops_token=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    before = written(store)
    for method, path in PROTECTED:
        r = client.request(method, path, headers=headers, json=SEED_BODY if method == "POST" else None)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
    assert written(store) == before


def test_right_token_is_let_through(make_client: MakeClient) -> None:
    client = make_client(ops_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post(DISPATCH, json=SEED_BODY, headers=auth)
    assert r.status_code == 201, r.text
    mid = r.json()["mission"]["mission_id"]
    assert client.get(f"{MISSIONS}/{mid}", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    for method, path in PROTECTED[2:]:
        r = client.request(method, path.replace("vpm_x", mid), headers=auth)
        assert r.status_code == 200, (path, r.text)
    # The token is checked before the body: a bad body with a good token is the body's fault.
    json_auth = {**auth, "Content-Type": "application/json"}
    assert_error(client.post(DISPATCH, content="{", headers=json_auth), 400, "invalid_request")
    assert_error(client.post(DISPATCH, content="{"), 401, "unauthorized")


def test_open_routes_need_no_token(make_client: MakeClient) -> None:
    client = make_client(ops_token=TOKEN)
    for path in ("/healthz", "/readyz", "/schema/openapi.json", "/schema"):
        assert client.get(path).status_code == 200, path
    schema = client.get("/schema/openapi.json").json()
    assert schema["components"]["securitySchemes"]["opsToken"]["scheme"] == "bearer"
    assert schema["paths"][DISPATCH]["post"]["security"] == [{"opsToken": []}]


def test_without_a_token_the_routes_are_open(make_client: MakeClient) -> None:
    client = make_client()
    assert client.get(MISSIONS).status_code == 200
    assert "securitySchemes" not in client.get("/schema/openapi.json").json().get("components", {})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bind_rules(tmp_path: Path) -> None:
    def make(**overrides: Any) -> Settings:
        return load_settings(state_dir=tmp_path, **overrides)

    check_bind(make(), "127.0.0.1")  # unauthenticated on loopback: allowed, with a warning
    check_bind(make(ops_token=TOKEN), "0.0.0.0")
    check_bind(make(allow_unauthenticated_bind=True), "0.0.0.0")
    with pytest.raises(ConfigError) as refused:
        check_bind(make(), "0.0.0.0")
    assert "UA_VP_OPS_TOKEN" in refused.value.message
    assert "UA_VP_ALLOW_UNAUTHENTICATED_BIND" in refused.value.message
