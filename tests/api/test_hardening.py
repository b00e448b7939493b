"""Issue 12, one test per finding, each over real HTTP against a real ``ua-vp serve``
(on SQLite and PostgreSQL through the ``serve`` fixture's database)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import DISPATCH, MISSIONS, SEED_BODY, Served, assert_error
from ua_vp.guard import MAX_MISSION_PATHS
from ua_vp.store import MissionStore

Serve = Callable[..., Served]
JSON = {"Content-Type": "application/json"}
SYSTEM_PYTHON = Path("/usr/bin/python3")
api_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For findings about the API and the guard alone: no store behaviour differs by backend."""


def _port(served: Served) -> int:
    return int(served.url.rsplit(":", 1)[1])


# --- who may call without a token ---------------------------------------------------------


def _dispatch_as_nobody(served: Served) -> tuple[int, dict[str, Any]]:
    """POST the seed body from a process of another OS user (uid 65534), stdlib only."""
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists() or shutil.which("setpriv") is None:
        pytest.skip("needs root, setpriv and /usr/bin/python3 to act as another OS user")
    code = (
        "import http.client, json, sys\n"
        f"c = http.client.HTTPConnection('127.0.0.1', {_port(served)}, timeout=10)\n"
        f"c.request('POST', {DISPATCH!r}, body=json.dumps({SEED_BODY!r}), "
        "headers={'Content-Type': 'application/json'})\n"
        "r = c.getresponse(); print(r.status); print(r.read().decode())\n"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(SYSTEM_PYTHON), "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    status, body = done.stdout.split("\n", 1)
    return int(status), json.loads(body)


@api_only
def test_tokenless_calls_are_accepted_only_from_the_servers_own_os_user(serve: Serve, store: MissionStore) -> None:
    served = serve()
    # The operator's seed curl, as the server's own user, keeps working.
    assert httpx.post(served.url + DISPATCH, json=SEED_BODY).status_code == 201
    status, body = _dispatch_as_nobody(served)
    assert status == 403, body
    assert body["error"]["code"] == "caller_not_allowed"
    assert "UA_VP_OPS_TOKEN" in body["error"]["message"]
    assert body["error"]["details"] == {"uid": 65534}
    assert len(store.list_missions()) == 1


@api_only
def test_tokenless_callers_any_restores_the_open_loopback(serve: Serve) -> None:
    served = serve(UA_VP_TOKENLESS_CALLERS="any")
    status, body = _dispatch_as_nobody(served)
    assert status == 201, body


# --- H1: cross-site requests ------------------------------------------------------------------


@api_only
def test_the_reported_cross_site_dispatch_is_refused(serve: Serve, store: MissionStore) -> None:
    served = serve()
    port = _port(served)
    seed = json.dumps(SEED_BODY)
    with httpx.Client(base_url=served.url, timeout=10) as http:
        # As reported: rebinding Host, foreign Origin, text/plain JSON.
        r = http.post(
            DISPATCH,
            content=seed,
            headers={
                "Host": f"attacker.example:{port}",
                "Origin": "http://attacker.example",
                "Content-Type": "text/plain",
            },
        )
        assert_error(r, 400, "host_not_allowed")
        # Each check on its own:
        assert_error(http.get(MISSIONS, headers={"Host": f"attacker.example:{port}"}), 400, "host_not_allowed")
        assert_error(http.get(MISSIONS, headers={"Host": "127.0.0.1.nip.io"}), 400, "host_not_allowed")
        for origin in ("http://attacker.example", "null", f"http://localhost:{port + 1}"):
            r = http.post(DISPATCH, json=SEED_BODY, headers={"Origin": origin})
            assert_error(r, 403, "origin_not_allowed")
        r = http.post(DISPATCH, json=SEED_BODY, headers={"Sec-Fetch-Site": "cross-site"})
        assert_error(r, 403, "origin_not_allowed")
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": content_type} if content_type else {}
            assert_error(http.post(DISPATCH, content=seed, headers=headers), 415, "unsupported_media_type")
        assert len(store.list_missions()) == 0

        # What stays allowed: loopback names, the API's own origin, JSON with a charset,
        # and reads from anywhere a browser would not let a page read anyway.
        # An address is no rebinding risk (that needs a name): http://10.0.0.5:8002 works.
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"[::1]:{port}", f"10.0.0.5:{port}"):
            assert http.post(DISPATCH, json=SEED_BODY, headers={"Host": host}).status_code == 201
        own = {"Origin": served.url, "Content-Type": "application/json; charset=utf-8"}
        assert http.post(DISPATCH, content=seed, headers=own).status_code == 201
        assert http.get(MISSIONS, headers={"Origin": "http://attacker.example"}).status_code == 200


@api_only
def test_configured_host_names_are_accepted(serve: Serve) -> None:
    served = serve(UA_VP_ALLOWED_HOSTS="ops.example, other.example")
    r = httpx.post(served.url + DISPATCH, json=SEED_BODY, headers={"Host": f"ops.example:{_port(served)}"})
    assert r.status_code == 201, r.text
    assert httpx.get(served.url + MISSIONS, headers={"Host": "third.example"}).status_code == 400


# --- M1: a frozen event loop ------------------------------------------------------------------


@api_only
def test_paths_per_mission_are_capped_before_any_is_resolved(serve: Serve, store: MissionStore) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=60) as http:
        # The report's body: 149k "./a" in 1 MiB.
        huge = {**SEED_BODY, "constraints": {"files": ["./a"] * 149_000}}
        started = time.monotonic()
        r = http.post(DISPATCH, json=huge)
        refused_after = time.monotonic() - started
        error = assert_error(r, 422, "too_many_paths")
        assert error["details"] == {"limit": MAX_MISSION_PATHS}
        assert str(MAX_MISSION_PATHS) in error["message"]
        at_limit = {**SEED_BODY, "constraints": {"files": ["./a"] * MAX_MISSION_PATHS}}
        assert http.post(DISPATCH, json=at_limit).status_code == 201
        over = {**SEED_BODY, "constraints": {"files": ["./a"] * MAX_MISSION_PATHS, "dir": "./b"}}
        assert_error(http.post(DISPATCH, json=over), 422, "too_many_paths")
    assert len(store.list_missions()) == 1
    print(f"149k-path dispatch refused in {refused_after:.3f} s")


# --- M4: unlimited SSE streams ----------------------------------------------------------------


def _open_stream(http: httpx.Client, mission_id: str) -> httpx.Response:
    request = http.build_request("GET", f"{MISSIONS}/{mission_id}/events", headers={"Accept": "text/event-stream"})
    return http.send(request, stream=True)


def test_event_streams_are_capped_per_client_and_in_total(serve: Serve) -> None:
    served = serve(UA_VP_MAX_EVENT_STREAMS="5", UA_VP_MAX_EVENT_STREAMS_PER_CLIENT="3")
    mid = httpx.post(served.url + DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
    # Two client addresses on loopback: 127.0.0.1 and 127.0.0.2.
    first = httpx.Client(base_url=served.url, timeout=10)
    second = httpx.Client(base_url=served.url, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    opened: list[httpx.Response] = []
    try:
        for _ in range(3):
            opened.append(_open_stream(first, mid))
            assert opened[-1].status_code == 200
        refused = _open_stream(first, mid)
        refused.read()
        error = assert_error(refused, 429, "too_many_streams")
        assert error["details"]["scope"] == "client" and error["details"]["limit"] == 3
        assert refused.headers["Retry-After"] == str(error["details"]["retry_after_seconds"]) == "5"
        for _ in range(2):
            opened.append(_open_stream(second, mid))
            assert opened[-1].status_code == 200
        refused = _open_stream(second, mid)
        refused.read()
        error = assert_error(refused, 429, "too_many_streams")
        assert error["details"]["scope"] == "total" and error["details"]["limit"] == 5

        # A closed stream gives its slot back.
        opened.pop(0).close()
        deadline = time.monotonic() + 10
        while (again := _open_stream(first, mid)).status_code == 429:
            again.read()
            assert time.monotonic() < deadline, "the closed stream's slot never came back"
            time.sleep(0.1)
        opened.append(again)
    finally:
        for response in opened:
            response.close()
        first.close()
        second.close()


def test_healthz_stays_responsive_with_streams_open_up_to_the_cap(serve: Serve) -> None:
    """Default caps (64 in total, 16 per client): four loopback addresses fill the server
    with streams following queued missions while /healthz is timed."""
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        missions = [http.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"] for _ in range(16)]
    clients = [
        httpx.Client(base_url=served.url, timeout=10, transport=httpx.HTTPTransport(local_address=f"127.0.0.{n}"))
        for n in range(1, 5)
    ]
    opened: list[httpx.Response] = []
    latencies: list[float] = []
    try:
        for client in clients:
            for mid in missions:
                opened.append(_open_stream(client, mid))
                assert opened[-1].status_code == 200
        over = _open_stream(clients[0], missions[0])
        over.read()
        assert_error(over, 429, "too_many_streams")
        with httpx.Client(base_url=served.url, timeout=10) as probe:
            for _ in range(30):
                started = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
    finally:
        for response in opened:
            response.close()
        for client in clients:
            client.close()
    worst, median = max(latencies), sorted(latencies)[len(latencies) // 2]
    print(f"/healthz with {len(opened)} streams open: median {median * 1000:.1f} ms, worst {worst * 1000:.1f} ms")
    assert worst < 1.0  # the bound the issue sets, not a performance goal


# --- L1: huge event ids -----------------------------------------------------------------------


def test_event_ids_beyond_bigint_are_400(serve: Serve) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        mid = http.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
        huge = "99999999999999999999"
        assert_error(http.get(f"{MISSIONS}/{mid}/events", params={"after_id": huge}), 400, "invalid_request")
        r = http.get(f"{MISSIONS}/{mid}/events", headers={"Accept": "text/event-stream", "Last-Event-ID": huge})
        error = assert_error(r, 400, "invalid_request")
        assert error["details"]["field"] == "Last-Event-ID"
        assert http.get(f"{MISSIONS}/{mid}/events", params={"after_id": 2**63 - 1}).json() == {"events": []}


# --- L2 and L3: the guard ---------------------------------------------------------------------


MISSED_PATHS: list[dict[str, Any]] = [
    {"repoPath": "/etc"},
    {"working_directory": "/etc"},
    {" repo_path ": "/etc"},
    {"notes": "a/../../../../../../../../etc/passwd"},
    {"source": "file:///etc/passwd"},
    {"key": "$HOME/.ssh"},
    {"key": "${HOME}/.ssh/id_rsa"},
    {"key": "$UA_VP_NO_SUCH_VARIABLE/x"},
    {"files": [" /etc/shadow"]},
]


@api_only
def test_paths_the_guard_used_to_miss_are_refused(serve: Serve, store: MissionStore) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for constraints in MISSED_PATHS:
            r = http.post(DISPATCH, json={**SEED_BODY, "constraints": constraints})
            error = assert_error(r, 403, "guard_violation")
            assert error["details"]["rule"] in ("outside_allowed_roots", "invalid_path"), constraints
        assert len(store.list_missions()) == 0
        # Ordinary strings are still not paths.
        ordinary = {"notes": "use src/ and docs/; see https://example.com/a/b", "price": "$5", "file": "src/main.py"}
        assert http.post(DISPATCH, json={**SEED_BODY, "constraints": ordinary}).status_code == 201


@api_only
def test_kernel_filesystems_are_refused_and_nothing_resolved_is_echoed(serve: Serve) -> None:
    served = serve()
    # What /proc/self/... would have revealed: the server's cwd and pid.
    server_cwd = os.readlink(f"/proc/{served.process.pid}/cwd")
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for path in ("/proc/self/cwd", "/proc/self/fd/3", "/proc/1/environ", "/dev/stdin", "/sys/kernel"):
            r = http.post(DISPATCH, json={**SEED_BODY, "constraints": {"path": path}})
            error = assert_error(r, 403, "guard_violation")
            assert error["details"] == {"path": path, "key": "constraints.path", "rule": "special_filesystem"}
            assert server_cwd not in r.text and f"/proc/{served.process.pid}" not in r.text


@api_only
def test_a_refusal_names_the_path_as_written_never_where_it_leads(serve: Serve, tmp_path: Path) -> None:
    handoff = tmp_path / "handoff"
    handoff.mkdir()
    secret_place = tmp_path / "somewhere-private" / "deep"
    secret_place.mkdir(parents=True)
    (handoff / "link").symlink_to(secret_place)
    served = serve(UA_VP_HANDOFF_ROOT=str(handoff))
    for given in (str(handoff / "link"), "~"):
        r = httpx.post(served.url + DISPATCH, json={**SEED_BODY, "constraints": {"path": given}})
        error = assert_error(r, 403, "guard_violation")
        assert "resolved" not in error["details"]
        assert "somewhere-private" not in r.text and str(Path.home()) + "'" not in r.text


# --- L5: idempotency keys per vp_id -----------------------------------------------------------


def test_idempotency_keys_are_per_vp_id_and_a_conflict_names_no_mission(serve: Serve) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        mine = http.post(DISPATCH, json={**SEED_BODY, "idempotency_key": "turn-1"}).json()["mission"]
        theirs = http.post(
            DISPATCH, json={**SEED_BODY, "vp_id": "vp.coder.primary", "objective": "x", "idempotency_key": "turn-1"}
        )
        assert theirs.status_code == 201, theirs.text
        conflict = http.post(DISPATCH, json={**SEED_BODY, "objective": "other", "idempotency_key": "turn-1"})
        assert_error(conflict, 409, "idempotency_conflict")
        assert mine["mission_id"] not in conflict.text
        assert theirs.json()["mission"]["mission_id"] not in conflict.text
