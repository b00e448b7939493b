"""One log format per stream, for ours and the libraries' records alike, and
``--log-level`` on ``serve`` and ``worker``: real processes, their real stderr."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import free_port, start_server
from ua_vp.missions import MissionSpec
from ua_vp.store import open_store


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as JSON; the test fails on the first line that is not."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- whole log ---\n{text}") from None
    return out


def test_serve_off_a_terminal_writes_only_json_lines_uvicorn_included(tmp_path: Path, sqlite_url: str) -> None:
    served = start_server({"UA_VP_DATABASE_URL": sqlite_url, "UA_VP_LOG_FORMAT": "auto"}, tmp_path)
    try:
        httpx.get(served.url + "/api/v1/ops/vp/missions", timeout=5)
    finally:
        assert served.stop() == 0
    records = json_lines(served.log.read_text())
    loggers = {r.get("logger") for r in records}
    assert {"uvicorn.error", "uvicorn.access", "ua_vp.api.server"} <= loggers, loggers
    access = [r for r in records if r.get("logger") == "uvicorn.access"]
    assert any(r["event"] == "http_request" and r["status"] == 200 and r["method"] == "GET" for r in access), access
    assert all({"timestamp", "level", "event"} <= r.keys() for r in records)
    assert not any("color_message" in r for r in records)


def test_log_level_on_serve_hides_info(tmp_path: Path, sqlite_url: str) -> None:
    served = start_server({"UA_VP_DATABASE_URL": sqlite_url}, tmp_path, "--log-level", "warning")
    httpx.get(served.url + "/api/v1/ops/vp/missions", timeout=5)
    assert served.stop() == 0
    records = json_lines(served.log.read_text())
    assert {r["level"] for r in records} <= {"warning", "error", "critical"}, records
    assert any(r["event"] == "ops_api_unauthenticated" for r in records)  # a warning still shows


def test_worker_log_level_and_mission_context(tmp_path: Path, sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    mission = store.enqueue(MissionSpec.create(vp_id="vp.general.primary", objective="plan")).mission
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(
        UA_VP_DATABASE_URL=sqlite_url, UA_VP_STATE_DIR=str(tmp_path / "state"), UA_VP_ENABLED_IDS="vp.general.primary"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ua_vp.cli",
            "worker",
            "--profile",
            "vp.general.primary",
            "--once",
            "--log-level",
            "debug",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    records = json_lines(run.stderr)
    finished = [r for r in records if r["event"] == "mission_finished"]
    assert finished and finished[0]["mission_id"] == mission.mission_id
    assert finished[0]["vp_id"] == "vp.general.primary" and finished[0]["worker_id"]
    assert store.get(mission.mission_id).status.terminal
    store.engine.dispose()

    quiet = subprocess.run(
        [
            sys.executable,
            "-m",
            "ua_vp.cli",
            "worker",
            "--profile",
            "vp.general.primary",
            "--once",
            "--log-level",
            "error",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_serve_on_a_terminal_writes_console_lines_uvicorn_included(tmp_path: Path, sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(UA_VP_DATABASE_URL=sqlite_url, UA_VP_STATE_DIR=str(tmp_path / "state"))
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ua_vp.cli", "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"Application startup complete" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(main, 65536)
                except OSError:
                    break
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        os.close(main)
    text = seen.decode(errors="replace")
    assert "Application startup complete" in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert not any(line.lstrip().startswith("{") for line in lines), text
    # The console renderer's layout for uvicorn's record too: the logger name in brackets.
    assert any("uvicorn.error" in line and "Application startup complete" in line for line in lines), text
    assert not any(line.startswith("INFO uvicorn") for line in lines), text
