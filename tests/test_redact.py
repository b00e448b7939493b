"""ua_vp.redact: the one helper that masks secrets in errors, events and logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ua_vp import redact
from ua_vp.config import load_settings
from ua_vp.errors import ConfigError
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore

KEY = "sk-proj-Zq9xY8wV7uT6sR5qP4oN3m"
PASSWORD = "pg-Pa55word-42"


@pytest.fixture(autouse=True)
def _forget_remembered() -> Iterator[None]:
    redact._reset_for_tests()
    yield
    redact._reset_for_tests()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://app:hunter2@db:5432/ua", "postgresql://app:***@db:5432/ua"),
        ("see https://u:p4ss@api.example/v1/chat", "see https://u:***@api.example/v1/chat"),
        ("invalid key: Bearer sk-abc.def_123", "invalid key: Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ('{"password": "a b c", "max_tokens": 50}', '{"password": "***", "max_tokens": 50}'),
        ("GET /x?api_key=abc123&page=2", "GET /x?api_key=***&page=2"),
        ("client_secret=s3 X-Api-Key: k9", "client_secret=*** X-Api-Key: ***"),
        (f"echo {KEY} done", "echo *** done"),
        ("ghp_" + "a1" * 18, "***"),
    ],
)
def test_secrets_in_text_are_masked(text: str, masked: str) -> None:
    assert redact.redact(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://postgres@127.0.0.1:5432/ua_vp",
        "budget.max_tokens=500 total_tokens: 37 token_budget=4",
        "risk-assessment and task-management",
        "sqlite:////var/lib/ua-vp/ua_vp.db",
        "set UA_VP_OPS_TOKEN to require a bearer token",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact.redact(text) == text


def test_remembered_values_are_masked_however_quoted() -> None:
    redact.remember("tok-0123456789", None, "abc")  # too short to mask literally
    assert redact.redact('got "tok-0123456789" and abc') == 'got "***" and abc'
    assert redact.redact_data({"note": ["x tok-0123456789 y"], "n": 3}) == {"note": ["x *** y"], "n": 3}


def test_values_under_secret_keys_are_masked_whole() -> None:
    data = {"api_key": "plain", "nested": [{"token": "t", "total_tokens": 5}], "msg": "Bearer zz9"}
    assert redact.redact_data(data) == {
        "api_key": "***",
        "nested": [{"token": "***", "total_tokens": 5}],
        "msg": "Bearer ***",
    }


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p@ss@h/db", "postgresql:/u:p@ss@h/db", "postgres://u:p@ss@h/db"],
)
def test_a_url_that_does_not_parse_still_hides_its_password(url: str) -> None:
    masked = redact.redact_url(url)
    assert "p@ss" not in masked and "ss@" not in masked and masked.endswith("@h/db")


@pytest.mark.parametrize(
    "url", [f"postgres://app:{PASSWORD}@db/ua", f"mysql://app:{PASSWORD}@db/ua", f"postgresql:/app:{PASSWORD}@db"]
)
def test_an_invalid_database_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(database_url=url)
    assert "UA_VP_DATABASE_URL" in info.value.message
    assert PASSWORD not in info.value.message


def test_the_cli_names_a_bad_database_url_without_its_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env["UA_VP_DATABASE_URL"] = f"postgres://app:{PASSWORD}@db/ua"
    done = subprocess.run(
        [sys.executable, "-m", "ua_vp.cli", "missions"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "UA_VP_DATABASE_URL" in done.stderr and "app:***@db/ua" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_log_lines_are_masked(tmp_path: Path) -> None:
    """Both structlog lines and stdlib records (uvicorn, alembic) go through the helper."""
    code = f"""
import logging, structlog
from ua_vp.config import load_settings
from ua_vp.logging import configure_logging
load_settings(state_dir={str(tmp_path)!r}, openai_api_key={KEY!r})
configure_logging("info", "json")
log = structlog.get_logger("t")
log.info("upstream_said", error="invalid key: Bearer " + {KEY!r}, url="https://u:pw9@x/v1", api_key="plain")
try:
    raise RuntimeError("boom " + {KEY!r})
except RuntimeError:
    log.exception("failed")
logging.getLogger("uvicorn.error").warning("connect to postgresql://a:%s@h failed", "pw9")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    first = json.loads(lines[0])
    assert first["error"] == "invalid key: Bearer ***"
    assert first["url"] == "https://u:***@x/v1"
    assert first["api_key"] == "***"
    assert KEY not in done.stderr and "pw9" not in done.stderr
    assert "RuntimeError: boom ***" in done.stderr
    assert "postgresql://a:***@h failed" in done.stderr


def test_the_store_masks_mission_errors_and_event_payloads(store: MissionStore) -> None:
    redact.remember(KEY)
    mission = store.enqueue(MissionSpec.create(vp_id="vp.general.primary", objective="x")).mission
    (claimed,) = store.claim("vp.general.primary", "w1")
    assert claimed.lease_token is not None
    assert store.add_progress(
        mission.mission_id, claimed.lease_token, [{"kind": "request_sent", "url": "https://u:pw9@h/v1"}]
    )
    error = {"code": "runtime_failed", "message": f"https://h/v1 answered HTTP 401: invalid key: {KEY}"}
    done = store.finalize(mission.mission_id, claimed.lease_token, Status.FAILED, error=error)

    assert done is not None and done.error is not None
    assert done.error["message"] == "https://h/v1 answered HTTP 401: invalid key: ***"
    stored = json.dumps([e.to_public() for e in store.events(mission.mission_id)])
    assert KEY not in stored and "pw9" not in stored
    assert "https://u:***@h/v1" in stored
    assert store.get(mission.mission_id).error == done.error
