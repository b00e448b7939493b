"""M5: no credential reaches a mission's error, its events or the server's log, whatever
the runtime quoted (here the openai runtime against a provider that echoes the key)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import DISPATCH, MISSIONS, SEED_BODY, Served

KEY = "sk-live-Qw3rTy8uIo9pAs0dFg1hJk"

Serve = Callable[..., Served]


@pytest.fixture
def echoing_provider() -> Iterator[int]:
    """tests/fake_openai.py answering 401 with the key quoted back, as some providers do."""
    script = Path(__file__).parents[1] / "fake_openai.py"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "--fail-first=99",
            "--fail-status=401",
            f"--fail-message=invalid key: Bearer {KEY}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    yield int(proc.stdout.readline().split()[1])
    proc.terminate()
    proc.wait(timeout=5)
    proc.stdout.close()


def test_a_provider_echoing_the_key_leaks_nothing(serve: Serve, echoing_provider: int) -> None:
    served = serve(
        UA_VP_EXTERNAL_DISPATCH_ENABLED="0",
        UA_VP_GENERAL_RUNTIME="openai",
        UA_VP_OPENAI_API_KEY=KEY,
        # Credentials in the base URL are refused at start (tests/runtimes/test_runtime_openai.py).
        UA_VP_OPENAI_BASE_URL=f"http://127.0.0.1:{echoing_provider}/v1",
        UA_VP_LOG_LEVEL="debug",
    )
    with httpx.Client(base_url=served.url, timeout=10) as http:
        mid = http.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
        deadline = time.monotonic() + 30
        while (mission := http.get(f"{MISSIONS}/{mid}").json()["mission"])["status"] not in ("failed", "completed"):
            assert time.monotonic() < deadline, mission
            time.sleep(0.1)
        events = http.get(f"{MISSIONS}/{mid}/events").text

    assert mission["status"] == "failed"
    assert "answered HTTP 401: " in mission["error"]["message"]
    assert "invalid key: Bearer ***" in mission["error"]["message"]
    assert f"http://127.0.0.1:{echoing_provider}/v1/chat/completions" in events  # request_sent names the URL
    served.stop()
    seen = str(mission) + events + served.log.read_text()
    assert KEY not in seen


def test_an_error_body_never_repeats_a_credential_the_caller_sent(client: Any) -> None:
    # Error messages quote what was sent (`got '...'`) so a person can see their mistake;
    # a key pasted into the wrong field must not come back in the body (or a proxy's log).
    sent = f"Bearer {KEY}"
    r = client.post(DISPATCH, json={**SEED_BODY, "constraints": {"network": sent}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_constraint"
    assert "got 'Bearer ***'" in r.json()["error"]["message"]
    assert KEY not in r.text

    r = client.get(MISSIONS, params={"status": f"token={KEY}"})
    assert r.status_code == 400
    assert KEY not in r.text and "***" in r.text
