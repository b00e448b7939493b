"""Bodies built to break the parser get a 400, not a 500."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from ua_vp.api.app import create_app
from ua_vp.config import load_settings

DISPATCH = "/api/v1/ops/vp/missions/dispatch"


def test_deeply_nested_constraints_are_a_400_and_write_nothing(tmp_path: Path) -> None:
    app = create_app(load_settings(state_dir=tmp_path / "state"))
    nested = '{"a":' * 5000 + "1" + "}" * 5000
    body = '{"vp_id":"vp.general.primary","objective":"x","constraints":' + nested + "}"
    with TestClient(app) as client:
        r = client.post(DISPATCH, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
        assert client.get("/api/v1/ops/vp/missions").json() == {"missions": []}


def test_an_absurd_budget_is_a_400(tmp_path: Path) -> None:
    app = create_app(load_settings(state_dir=tmp_path / "state"))
    with TestClient(app) as client:
        r = client.post(
            DISPATCH, json={"vp_id": "vp.general.primary", "objective": "x", "budget": {"max_seconds": 10**400}}
        )
        assert r.status_code == 400 and "budget.max_seconds" in r.json()["error"]["message"]
