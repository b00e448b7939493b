"""Bad input gets a clear error naming what is wrong, and writes nothing."""

from __future__ import annotations

import pytest

from ua_vp.config import load_settings
from ua_vp.errors import ConfigError, InvalidRequest
from ua_vp.missions import MissionSpec, Status, parse_statuses


def make(**kw: object) -> MissionSpec:
    return MissionSpec.create(**{"vp_id": "vp.general.primary", "objective": "do it", **kw})


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"objective": ""}, "objective"),
        ({"objective": "   "}, "objective"),
        ({"objective": None}, "objective"),
        ({"objective": 42}, "objective"),
        ({"objective": "x" * 20_001}, "objective"),
        ({"vp_id": ""}, "vp_id"),
        ({"constraints": ["a", "list"]}, "constraints"),
        ({"constraints": "repo=/x"}, "constraints"),
        ({"budget": 10}, "budget"),
        ({"budget": {"max_dollars": 3}}, "budget"),
        ({"budget": {"max_seconds": -1}}, "budget"),
        ({"budget": {"max_seconds": True}}, "budget"),
        ({"priority": 10_000}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"reply_mode": "carrier-pigeon"}, "reply_mode"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"objective": "nul \x00 inside"}, "objective"),
        ({"budget": {"max_seconds": 10**400}}, "budget"),
        ({"budget": {"max_tokens": float("inf")}}, "budget"),
        ({"budget": {"max_tokens": 0.5}}, "budget"),  # was sent to the model as max_tokens: 0
        ({"budget": {"max_output_bytes": 1000.5}}, "budget"),
        ({"constraints": {"weight": float("nan")}}, "constraints"),
        ({"constraints": {"notes": ["fine", "lone \ud800 surrogate"]}}, "constraints"),
    ],
)
def test_a_malformed_mission_is_refused_naming_the_field(override: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        make(**override)
    assert info.value.details["field"] == field
    assert field.split(".")[0] in info.value.message


def test_statuses_parse_from_a_comma_list_or_all() -> None:
    assert parse_statuses("queued, running") == [Status.QUEUED, Status.RUNNING]
    assert parse_statuses("all") is None
    assert parse_statuses(None) is None
    with pytest.raises(InvalidRequest, match="unknown status 'done'; use 'all' or a comma list of queued"):
        parse_statuses("queued,done")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("UA_VP_POLL_INTERVAL_SECONDS", "0.5", "greater than or equal to 1"),
        ("UA_VP_POLL_INTERVAL_SECONDS", "soon", "valid number"),
        ("UA_VP_LEASE_TTL_SECONDS", "5", "greater than or equal to 15"),
        ("UA_VP_MAX_CONCURRENT_MISSIONS", "0", "greater than or equal to 1"),
        ("UA_VP_DISPATCH_MODE", "carrier", "'db_pull' or 'in_process'"),
        ("UA_VP_EXTERNAL_DISPATCH_ENABLED", "maybe", "valid boolean"),
        ("UA_VP_DATABASE_URL", "not a url", "not a database URL"),
        ("UA_VP_DATABASE_URL", "mysql://u@h/db", "not supported"),
        ("UA_VP_PORT", "99999", "less than or equal to 65535"),
        ("UA_VP_POLL_INTERVAL_SECONDS", "100", "must be at most half of UA_VP_LEASE_TTL_SECONDS"),
    ],
)
def test_a_bad_setting_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert variable in info.value.message
    assert says in info.value.message


def test_defaults_are_the_originals(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    s = load_settings()
    assert (s.poll_interval_seconds, s.lease_ttl_seconds) == (5.0, 120.0)
    assert s.external_dispatch_enabled is False
    assert s.enabled_ids is None, "unset: every installed profile is enabled"
    assert s.sqlalchemy_url.startswith("sqlite:///") and s.is_embedded


def test_comma_lists_and_postgres_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UA_VP_ENABLED_IDS", " vp.coder.primary , ,vp.x ")
    monkeypatch.setenv("UA_VP_DATABASE_URL", "postgresql://u:p@db:5432/ua")
    s = load_settings()
    assert s.enabled_ids == ["vp.coder.primary", "vp.x"]
    assert s.sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/ua"


def test_dotenv_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    Path(".env").write_text("UA_VP_MAX_CONCURRENT_MISSIONS=7\n")
    assert load_settings().max_concurrent_missions == 7


def test_empty_values_mean_unset_as_in_a_copied_env_sample(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    Path(".env").write_text((Path(__file__).resolve().parent.parent / ".env.sample").read_text())
    s = load_settings()
    assert s.ops_token is None, "an empty UA_VP_OPS_TOKEN must not become an empty token"
    assert s.handoff_root is None and s.enabled_ids is None and s.database_url is None
