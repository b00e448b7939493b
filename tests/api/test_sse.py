"""GET .../events as Server-Sent Events: replay, follow, Last-Event-ID, and the
stream ending after the terminal event. The mission is driven by the store, as a
worker would drive it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.api.conftest import DISPATCH, MISSIONS, SEED_BODY, assert_error
from tests.out_of_order import commit_out_of_order
from ua_vp.missions import Status
from ua_vp.store import MissionStore

SSE = {"Accept": "text/event-stream"}


def parse_sse(lines: Iterable[str]) -> list[dict[str, Any]]:
    """SSE messages as dicts with id, event and the decoded data (comments skipped)."""
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if not line:
            if current:
                messages.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = json.loads(value) if name == "data" else value
    if current:
        messages.append(current)
    return messages


def run_mission(store: MissionStore, mission_id: str, *, delay: float = 0.4) -> threading.Thread:
    """A stand-in worker in a thread: claim, report progress, complete."""

    def work() -> None:
        time.sleep(delay)
        [mission] = store.claim("vp.general.primary", "w-sse")
        assert mission.lease_token is not None
        time.sleep(delay)
        store.add_progress(mission_id, mission.lease_token, [{"kind": "step", "n": 1}, {"kind": "step", "n": 2}])
        time.sleep(delay)
        store.finalize(mission_id, mission.lease_token, Status.COMPLETED, result={"summary": "done"})

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def stream(client: TestClient[Any], path: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    with client.stream("GET", path, headers=headers or SSE) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return parse_sse(r.iter_lines())


def test_follow_until_the_terminal_event(client: TestClient[Any], store: MissionStore) -> None:
    mid = client.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
    worker = run_mission(store, mid)
    started = time.monotonic()
    messages = stream(client, f"{MISSIONS}/{mid}/events")
    worker.join(5)
    # It waited for the worker rather than stopping at what existed when it began...
    assert time.monotonic() - started >= 1.0
    assert [m["event"] for m in messages] == [
        "vp.mission.dispatched",
        "vp.mission.started",
        "vp.mission.progress",
        "vp.mission.progress",
        "vp.mission.completed",
    ]
    # ...and each message carries the event's id, type and JSON, in id order.
    assert [int(m["id"]) for m in messages] == [m["data"]["id"] for m in messages]
    assert [m["data"]["id"] for m in messages] == sorted(m["data"]["id"] for m in messages)
    assert [m["data"]["payload"].get("n") for m in messages[2:4]] == [1, 2]
    assert messages == [{"id": str(e.id), "event": e.event_type, "data": e.to_public()} for e in store.events(mid)]


def test_replay_of_a_finished_mission_and_last_event_id(client: TestClient[Any], store: MissionStore) -> None:
    mid = client.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
    run_mission(store, mid, delay=0).join(5)
    events = store.events(mid)
    path = f"{MISSIONS}/{mid}/events"

    assert [m["data"]["id"] for m in stream(client, path)] == [e.id for e in events]
    # A reconnecting EventSource sends the last id it saw and gets only what follows.
    resumed = stream(client, path, {**SSE, "Last-Event-ID": str(events[1].id)})
    assert [m["data"]["id"] for m in resumed] == [e.id for e in events[2:]]
    # Having seen the terminal event already, the stream ends at once, empty.
    assert stream(client, path, {**SSE, "Last-Event-ID": str(events[-1].id)}) == []
    # ?stream=1 asks for SSE without the header; after_id is the query form of Last-Event-ID.
    assert [m["data"]["id"] for m in stream(client, f"{path}?stream=1&after_id={events[2].id}", {})] == [
        e.id for e in events[3:]
    ]


def test_cancelled_mission_stream_ends_at_cancelled(client: TestClient[Any], store: MissionStore) -> None:
    mid = client.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]

    def cancel_later() -> None:
        time.sleep(0.3)
        client.post(f"{MISSIONS}/{mid}/cancel")

    threading.Thread(target=cancel_later, daemon=True).start()
    events = [m["event"] for m in stream(client, f"{MISSIONS}/{mid}/events")]
    assert events == ["vp.mission.dispatched", "vp.mission.cancel_requested", "vp.mission.cancelled"]


@pytest.mark.parametrize("last_event_id", ["abc", "-1", "1.5"])
def test_bad_last_event_id_is_400(client: TestClient[Any], last_event_id: str) -> None:
    mid = client.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
    r = client.get(f"{MISSIONS}/{mid}/events", headers={**SSE, "Last-Event-ID": last_event_id})
    assert assert_error(r, 400, "invalid_request")["details"]["field"] == "Last-Event-ID"


def test_an_event_committed_out_of_id_order_is_not_skipped(client: TestClient[Any], store: MissionStore) -> None:
    """PostgreSQL assigns ids at INSERT: a transaction holding id N can commit after
    N+1 was already streamed. The follower must still send N."""
    if not store.is_postgres:
        pytest.skip("SQLite has one writer at a time: ids always commit in order")
    mid = client.post(DISPATCH, json=SEED_BODY).json()["mission"]["mission_id"]
    [mission] = store.claim("vp.general.primary", "w-race")
    thread = commit_out_of_order(store, mission)
    messages = stream(client, f"{MISSIONS}/{mid}/events")
    thread.join(5)
    kinds = [m["data"]["payload"].get("kind") for m in messages if m["event"] == "vp.mission.progress"]
    assert kinds == ["fast", "slow"]
    assert sorted(m["data"]["id"] for m in messages) == [e.id for e in store.events(mid)]
    assert messages[-1]["event"] == "vp.mission.completed"
