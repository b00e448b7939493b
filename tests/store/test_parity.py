"""Parity: the same scripted lifecycles on SQLite and PostgreSQL leave the same
mission rows and the same events, normalised only for ids and times."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from ua_vp.errors import IdempotencyConflict
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore, open_store

VP = "vp.general.primary"
LEASE = 0.3


class Normaliser:
    """Ids become their order of appearance; times and tokens become their presence."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, datetime):
            return "<time>"
        return value

    def _field(self, key: str, value: Any) -> Any:
        if value is None:
            return None
        if key == "mission_id":
            return self.ids.setdefault(value, f"mission-{len(self.ids)}")
        if key in ("lease_token", "id", "request_hash") or key.endswith("_at"):
            return f"<{key}>"
        return self(value)


def spec(objective: str, **kw: Any) -> MissionSpec:
    return MissionSpec.create(vp_id=VP, objective=objective, **kw)


def script(store: MissionStore) -> list[Any]:
    """Every store operation, in the order a busy day would use them; returns what
    each step answered, then every mission row and every event."""
    seen: list[Any] = []

    def row(mission_id: str) -> None:
        m = store.get(mission_id)
        seen.append({**m.to_public(), "lease_token": m.lease_token})

    # enqueue, idempotent replay and conflict
    first = store.enqueue(
        spec("one", constraints={"repo": "x", "nothing": None}, budget={"max_seconds": 30}, priority=5)
    )
    replay = store.enqueue(spec("keyed", idempotency_key="turn-1"))
    again = store.enqueue(spec("keyed", idempotency_key="turn-1"))
    seen.append((first.created, replay.created, again.created, again.mission.mission_id == replay.mission.mission_id))
    with pytest.raises(IdempotencyConflict) as conflict:
        store.enqueue(spec("different", idempotency_key="turn-1"))
    seen.append(conflict.value.code)

    # claim (priority first), heartbeat, progress, finalize of every kind
    claimed = store.claim(VP, "w1", limit=2)
    seen.append([m.objective for m in claimed])
    one, keyed = claimed
    seen.append(store.heartbeat(one.mission_id, one.lease_token or ""))
    seen.append(store.add_progress(one.mission_id, one.lease_token or "", [{"kind": "output", "line": None}]))
    seen.append(store.add_progress(one.mission_id, "stale", [{"kind": "late"}]))
    store.finalize(one.mission_id, one.lease_token or "", Status.COMPLETED, result={"summary": "ok", "none": None})
    # A guard's error keeps its nulls (PostgreSQL's jsonb_strip_nulls once dropped them).
    error = {"code": "guard_violation", "message": "no", "details": {"path": "/x", "resolved": None}}
    store.finalize(keyed.mission_id, keyed.lease_token or "", Status.FAILED, error=error)
    seen.append(store.finalize(keyed.mission_id, keyed.lease_token or "", Status.COMPLETED))

    for m in store.enqueue(spec("cancelled by its worker")).mission, store.enqueue(spec("cancelled queued")).mission:
        row(m.mission_id)
    (running,) = store.claim(VP, "w2")
    # cancel of a running mission (flagged, twice), then of a queued one (at once)
    seen.append(store.request_cancel(running.mission_id).changed)
    seen.append(store.request_cancel(running.mission_id).changed)
    seen.append(store.heartbeat(running.mission_id, running.lease_token or ""))
    store.finalize(running.mission_id, running.lease_token or "", Status.CANCELLED, error={"code": "cancelled"})
    queued = store.list_missions(statuses=[Status.QUEUED])[0]
    seen.append(store.request_cancel(queued.mission_id).changed)
    seen.append(store.request_cancel(queued.mission_id).changed)

    # reap: back to the queue, then failed at max_attempts; cancelled when cancel was asked
    doomed = store.enqueue(spec("reaped twice", max_attempts=2)).mission
    asked = store.enqueue(spec("cancel asked, then reaped")).mission
    store.claim(VP, "w3", limit=2)
    store.request_cancel(asked.mission_id)
    time.sleep(LEASE + 0.1)
    seen.append(sorted((m.objective, m.status.value) for m in store.reap()))
    (again_running,) = store.claim(VP, "w4", limit=1)
    time.sleep(LEASE + 0.1)
    seen.append(sorted((m.objective, m.status.value) for m in store.reap()))
    seen.append(store.finalize(doomed.mission_id, again_running.lease_token or "", Status.COMPLETED))

    # release: back to the queue, or cancelled when cancel was asked
    kept = store.enqueue(spec("released")).mission
    dropped = store.enqueue(spec("released after cancel")).mission
    held = {m.mission_id: m for m in store.claim(VP, "w5", limit=2)}
    store.request_cancel(dropped.mission_id)
    store.release(kept.mission_id, held[kept.mission_id].lease_token or "", reason="worker_shutdown")
    store.release(dropped.mission_id, held[dropped.mission_id].lease_token or "", reason="worker_shutdown")
    seen.append(store.release(kept.mission_id, "stale", reason="worker_shutdown"))
    # cancel after a requeue: the mission is queued again, so the cancel is immediate
    seen.append(store.request_cancel(kept.mission_id).changed)

    for m in sorted(store.list_missions(limit=500), key=lambda m: m.objective):
        row(m.mission_id)
        seen.append([{**e.to_public(), "id": e.id > 0} for e in store.events(m.mission_id)])
    return seen


@pytest.mark.postgres
def test_sqlite_and_postgres_leave_the_same_rows_and_events(sqlite_url: str, pg_url: str) -> None:
    outcomes = []
    for url in (sqlite_url, pg_url):
        store = open_store(url, lease_ttl_seconds=LEASE)
        try:
            outcomes.append(Normaliser()(script(store)))
        finally:
            store.engine.dispose()
    on_sqlite, on_postgres = outcomes
    for step, (a, b) in enumerate(zip(on_sqlite, on_postgres, strict=True)):
        assert a == b, f"step {step} differs:\nSQLite:     {a}\nPostgreSQL: {b}"


def test_every_store_operation_moves_only_along_transitions() -> None:
    from ua_vp.missions import LIFECYCLE, TRANSITIONS, Fence, Transition, check_lifecycle

    check_lifecycle(LIFECYCLE)
    sneaky = Transition("revive", frozenset({Status.COMPLETED}), {Status.QUEUED: None}, Fence.LEASE)
    with pytest.raises(AssertionError, match="completed -> queued is not in TRANSITIONS"):
        check_lifecycle((*LIFECYCLE, sneaky))
    without_reap = tuple(t for t in LIFECYCLE if t.name not in ("reap", "release"))
    with pytest.raises(AssertionError, match="no store operation"):
        check_lifecycle(without_reap)
    assert TRANSITIONS[Status.RUNNING] >= {Status.QUEUED}


def test_statuses_and_event_names_are_not_spelled_in_the_store_sql() -> None:
    import re
    from pathlib import Path

    import ua_vp.store
    from ua_vp.missions import Event

    names = [s.value for s in Status] + [e.value for e in Event]
    pattern = re.compile("|".join(f"'{re.escape(n)}'" for n in names))
    for source in Path(ua_vp.store.__file__).parent.glob("*.py"):
        found = pattern.findall(source.read_text())
        assert not found, f"{source.name} spells {found} in SQL; take them from ua_vp.missions"
