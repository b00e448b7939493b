"""Every store operation and transition, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time

import pytest

from ua_vp.errors import IdempotencyConflict, InvalidRequest, MissionNotFound
from ua_vp.missions import TERMINAL, TRANSITIONS, MissionSpec, Status, can_transition
from ua_vp.store import MissionStore
from ua_vp.store.store import Outcome


def spec(objective: str = "write a haiku", **kw: object) -> MissionSpec:
    return MissionSpec.create(vp_id=kw.pop("vp_id", "vp.general.primary"), objective=objective, **kw)


def event_types(store: MissionStore, mission_id: str) -> list[str]:
    return [e.event_type.removeprefix("vp.mission.") for e in store.events(mission_id)]


def test_enqueue_writes_a_queued_row_and_its_dispatched_event(store: MissionStore) -> None:
    enq = store.enqueue(spec(constraints={"repo": "x"}, budget={"max_seconds": 30}, priority=5))
    assert enq.created
    m = store.get(enq.mission.mission_id)
    assert (m.status, m.attempt, m.priority, m.constraints, m.budget) == (
        Status.QUEUED,
        0,
        5,
        {"repo": "x"},
        {"max_seconds": 30},
    )
    assert m.created_at is not None and m.created_at.tzinfo is not None
    assert event_types(store, m.mission_id) == ["dispatched"]


def test_claim_takes_priority_then_age_and_gives_each_mission_its_own_token(store: MissionStore) -> None:
    late = store.enqueue(spec("late", priority=100)).mission
    urgent = store.enqueue(spec("urgent", priority=1)).mission
    early = store.enqueue(spec("early", priority=100)).mission
    other_vp = store.enqueue(spec("other", vp_id="vp.coder.primary")).mission

    claimed = store.claim("vp.general.primary", "w1", limit=10)

    assert [m.mission_id for m in claimed] == [urgent.mission_id, late.mission_id, early.mission_id]
    assert all(m.status is Status.RUNNING and m.attempt == 1 and m.worker_id == "w1" for m in claimed)
    assert len({m.lease_token for m in claimed}) == 3
    assert all(m.lease_expires_at and m.started_at for m in claimed)
    assert store.get(other_vp.mission_id).status is Status.QUEUED
    assert store.claim("vp.general.primary", "w2", limit=10) == []
    assert event_types(store, urgent.mission_id) == ["dispatched", "started"]


def test_claim_respects_its_limit(store: MissionStore) -> None:
    for i in range(5):
        store.enqueue(spec(f"m{i}"))
    assert len(store.claim("vp.general.primary", "w", limit=2)) == 2
    assert len(store.claim("vp.general.primary", "w", limit=10)) == 3


@pytest.mark.parametrize("outcome", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
def test_finalize_ends_a_running_mission_once(store: MissionStore, outcome: Status) -> None:
    m = store.enqueue(spec()).mission
    (running,) = store.claim(m.vp_id, "w1")
    assert running.lease_token
    error = {"code": "boom", "message": "it broke"} if outcome is Status.FAILED else None
    done = store.finalize(m.mission_id, running.lease_token, outcome, result={"summary": "ok"}, error=error)
    assert done is not None and done.status is outcome and done.finished_at is not None
    assert done.error == error
    # The same worker finalizing twice (a retried commit, say) changes nothing.
    assert store.finalize(m.mission_id, running.lease_token, Status.COMPLETED) is None
    assert store.get(m.mission_id).status is outcome
    assert event_types(store, m.mission_id) == ["dispatched", "started", outcome.value]


def test_finalize_needs_a_terminal_status(store: MissionStore) -> None:
    m = store.enqueue(spec()).mission
    (running,) = store.claim(m.vp_id, "w1")
    with pytest.raises(InvalidRequest):
        store.finalize(m.mission_id, running.lease_token or "", Status.QUEUED)


def test_heartbeat_extends_the_lease_and_reports_cancel(store: MissionStore) -> None:
    m = store.enqueue(spec()).mission
    (running,) = store.claim(m.vp_id, "w1")
    token = running.lease_token or ""
    time.sleep(0.01)
    beat = store.heartbeat(m.mission_id, token)
    assert beat.lease_held and not beat.cancel_requested
    after = store.get(m.mission_id)
    assert after.lease_expires_at and running.lease_expires_at
    assert after.lease_expires_at > running.lease_expires_at

    assert store.request_cancel(m.mission_id).changed
    assert store.heartbeat(m.mission_id, token).cancel_requested
    assert store.heartbeat(m.mission_id, "not-the-token").lease_held is False


def test_one_batched_finalize_fences_each_mission_by_its_own_lease(store: MissionStore) -> None:
    for i in range(4):
        store.enqueue(spec(f"m{i}"))
    ok, stale, cancelled, done = store.claim("vp.general.primary", "w1", limit=4)
    assert store.finalize(done.mission_id, done.lease_token or "", Status.COMPLETED) is not None
    batch = [
        Outcome(ok.mission_id, ok.lease_token or "", Status.COMPLETED, {"summary": "ok"}, None),
        Outcome(stale.mission_id, "a-lease-that-was-reaped", Status.COMPLETED, {"summary": "late"}, None),
        Outcome(cancelled.mission_id, cancelled.lease_token or "", Status.CANCELLED, None, None),
        Outcome(done.mission_id, done.lease_token or "", Status.FAILED, None, {"code": "x", "message": "y"}),
    ]

    answers = store.finalize_many(batch)

    # In the batch's order; None wherever the lease did not hold or the mission had already ended.
    assert [a.status if a else None for a in answers] == [Status.COMPLETED, None, Status.CANCELLED, None]
    assert store.get(stale.mission_id).status is Status.RUNNING  # the late write changed nothing
    assert store.get(done.mission_id).status is Status.COMPLETED  # terminal stays terminal
    assert store.finalize_many(batch) == [None, None, None, None]  # a replayed batch: nothing doubled
    assert event_types(store, ok.mission_id) == ["dispatched", "started", "completed"]
    assert event_types(store, done.mission_id) == ["dispatched", "started", "completed"]


def test_one_batched_heartbeat_answers_for_each_lease(store: MissionStore) -> None:
    for i in range(3):
        store.enqueue(spec(f"m{i}"))
    held, asked, lost = store.claim("vp.general.primary", "w1", limit=3)
    assert store.request_cancel(asked.mission_id).changed

    beats = store.heartbeat_many(
        [(held.mission_id, held.lease_token or ""), (asked.mission_id, asked.lease_token or ""), (lost.mission_id, "x")]
    )

    assert (beats[held.mission_id].lease_held, beats[held.mission_id].cancel_requested) == (True, False)
    assert (beats[asked.mission_id].lease_held, beats[asked.mission_id].cancel_requested) == (True, True)
    assert beats[lost.mission_id].lease_held is False


def test_cancel_of_a_queued_mission_is_immediate(store: MissionStore) -> None:
    m = store.enqueue(spec()).mission
    outcome = store.request_cancel(m.mission_id)
    assert outcome.changed and outcome.mission.status is Status.CANCELLED
    assert outcome.mission.error == {"code": "cancelled", "message": "cancelled before it started (requested)"}
    assert event_types(store, m.mission_id) == ["dispatched", "cancel_requested", "cancelled"]
    assert store.claim(m.vp_id, "w1") == []


def test_cancel_of_a_running_mission_flags_it_once(store: MissionStore) -> None:
    m = store.enqueue(spec()).mission
    (running,) = store.claim(m.vp_id, "w1")
    first = store.request_cancel(m.mission_id)
    second = store.request_cancel(m.mission_id)
    assert first.changed and first.mission.status is Status.RUNNING and first.mission.cancel_requested_at
    assert not second.changed
    assert event_types(store, m.mission_id) == ["dispatched", "started", "cancel_requested"]
    assert store.finalize(m.mission_id, running.lease_token or "", Status.CANCELLED) is not None


def test_cancel_of_a_terminal_mission_answers_and_changes_nothing(store: MissionStore) -> None:
    m = store.enqueue(spec()).mission
    (running,) = store.claim(m.vp_id, "w1")
    store.finalize(m.mission_id, running.lease_token or "", Status.COMPLETED, result={"summary": "done"})
    outcome = store.request_cancel(m.mission_id)
    assert not outcome.changed and outcome.mission.status is Status.COMPLETED
    assert event_types(store, m.mission_id) == ["dispatched", "started", "completed"]


def test_unknown_mission_is_a_clear_not_found(store: MissionStore) -> None:
    with pytest.raises(MissionNotFound, match="no mission with id 'vpm_nope'"):
        store.get("vpm_nope")
    with pytest.raises(MissionNotFound):
        store.request_cancel("vpm_nope")


def test_progress_is_written_only_under_the_lease(store: MissionStore) -> None:
    m = store.enqueue(spec()).mission
    (running,) = store.claim(m.vp_id, "w1")
    assert store.add_progress(m.mission_id, running.lease_token or "", [{"kind": "output", "line": "hi"}])
    assert not store.add_progress(m.mission_id, "stale", [{"kind": "output", "line": "late"}])
    progress = [e.payload for e in store.events(m.mission_id) if e.event_type == "vp.mission.progress"]
    assert progress == [{"kind": "output", "line": "hi"}]


# -- reaping and fencing --------------------------------------------------------------------


def test_reap_requeues_an_expired_lease_then_fails_it_at_max_attempts(short_lease_store: MissionStore) -> None:
    store = short_lease_store
    m = store.enqueue(spec(max_attempts=2)).mission
    store.claim(m.vp_id, "w1")
    time.sleep(0.3)
    (requeued,) = store.reap()
    assert requeued.status is Status.QUEUED and requeued.worker_id is None and requeued.attempt == 1

    (second,) = store.claim(m.vp_id, "w2")
    assert second.attempt == 2
    time.sleep(0.3)
    (failed,) = store.reap()
    assert failed.status is Status.FAILED and failed.finished_at is not None
    assert failed.error and failed.error["code"] == "lease_expired"
    assert event_types(store, m.mission_id) == ["dispatched", "started", "retried", "started", "failed"]
    assert store.reap() == []


def test_reap_leaves_live_leases_alone(store: MissionStore) -> None:
    m = store.enqueue(spec()).mission
    store.claim(m.vp_id, "w1")
    assert store.reap() == []
    assert store.get(m.mission_id).status is Status.RUNNING


def test_reap_cancels_an_expired_mission_whose_cancel_was_requested(short_lease_store: MissionStore) -> None:
    store = short_lease_store
    m = store.enqueue(spec()).mission
    store.claim(m.vp_id, "w1")
    store.request_cancel(m.mission_id)
    time.sleep(0.3)
    (reaped,) = store.reap()
    assert reaped.status is Status.CANCELLED


def test_a_stale_worker_is_fenced_out_after_reap_and_reclaim(short_lease_store: MissionStore) -> None:
    store = short_lease_store
    m = store.enqueue(spec()).mission
    (old,) = store.claim(m.vp_id, "old-worker")
    time.sleep(0.3)
    store.reap()
    (new,) = store.claim(m.vp_id, "new-worker")
    assert old.lease_token != new.lease_token

    assert store.heartbeat(m.mission_id, old.lease_token or "").lease_held is False
    assert (
        store.finalize(m.mission_id, old.lease_token or "", Status.FAILED, error={"code": "x", "message": "late"})
        is None
    )
    assert not store.add_progress(m.mission_id, old.lease_token or "", [{"kind": "late"}])
    current = store.get(m.mission_id)
    assert (current.status, current.worker_id, current.lease_token) == (Status.RUNNING, "new-worker", new.lease_token)

    done = store.finalize(m.mission_id, new.lease_token or "", Status.COMPLETED, result={"summary": "new"})
    assert done is not None and done.result == {"summary": "new"}


def test_terminal_missions_never_change(short_lease_store: MissionStore) -> None:
    store = short_lease_store
    m = store.enqueue(spec()).mission
    (running,) = store.claim(m.vp_id, "w1")
    token = running.lease_token or ""
    store.finalize(m.mission_id, token, Status.COMPLETED, result={"summary": "done"})
    before = store.get(m.mission_id)
    time.sleep(0.3)
    assert store.reap() == []
    assert store.claim(m.vp_id, "w2") == []
    assert store.heartbeat(m.mission_id, token).lease_held is False
    assert not store.request_cancel(m.mission_id).changed
    for outcome in TERMINAL:
        assert store.finalize(m.mission_id, token, outcome) is None
    assert store.get(m.mission_id) == before


def test_the_transition_table_has_no_way_out_of_a_terminal_status() -> None:
    for terminal in TERMINAL:
        assert TRANSITIONS[terminal] == frozenset()
        assert not any(can_transition(terminal, s) for s in Status)
    assert can_transition(Status.QUEUED, Status.CANCELLED)
    assert not can_transition(Status.QUEUED, Status.COMPLETED)
    assert can_transition(Status.RUNNING, Status.QUEUED)


# -- idempotency ------------------------------------------------------------------------------


def test_same_key_same_request_returns_the_same_mission(store: MissionStore) -> None:
    first = store.enqueue(spec(idempotency_key="turn-42"))
    replay = store.enqueue(spec(idempotency_key="turn-42"))
    assert first.created and not replay.created
    assert replay.mission.mission_id == first.mission.mission_id
    assert event_types(store, first.mission.mission_id) == ["dispatched"]


def test_same_key_different_request_is_a_conflict_and_writes_nothing(store: MissionStore) -> None:
    first = store.enqueue(spec("one thing", idempotency_key="turn-42"))
    with pytest.raises(IdempotencyConflict, match="turn-42"):
        store.enqueue(spec("another thing", idempotency_key="turn-42"))
    assert [m.mission_id for m in store.list_missions()] == [first.mission.mission_id]


def test_keys_are_scoped_per_vp_id_and_a_conflict_names_no_mission(store: MissionStore) -> None:
    """L5: one caller's key for one profile neither blocks nor reveals another's mission."""
    general = store.enqueue(spec("one thing", idempotency_key="turn-42")).mission
    coder = store.enqueue(spec("another thing", idempotency_key="turn-42", vp_id="vp.coder.primary"))
    assert coder.created and coder.mission.mission_id != general.mission_id
    replay = store.enqueue(spec("another thing", idempotency_key="turn-42", vp_id="vp.coder.primary"))
    assert not replay.created and replay.mission.mission_id == coder.mission.mission_id
    with pytest.raises(IdempotencyConflict) as info:
        store.enqueue(spec("a third thing", idempotency_key="turn-42"))
    assert general.mission_id not in info.value.message + str(info.value.details)
    assert coder.mission.mission_id not in info.value.message + str(info.value.details)
    assert len(store.list_missions()) == 2


# -- reads --------------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters(store: MissionStore) -> None:
    a = store.enqueue(spec("a")).mission
    b = store.enqueue(spec("b", vp_id="vp.coder.primary")).mission
    c = store.enqueue(spec("c")).mission
    store.request_cancel(c.mission_id)
    assert [m.mission_id for m in store.list_missions()] == [c.mission_id, b.mission_id, a.mission_id]
    assert [m.mission_id for m in store.list_missions(vp_id="vp.general.primary", statuses=[Status.QUEUED])] == [
        a.mission_id
    ]
    assert len(store.list_missions(limit=1)) == 1


@pytest.mark.parametrize("limit", [0, -1, 501, 10**9])
def test_absurd_limits_are_refused(store: MissionStore, limit: int) -> None:
    with pytest.raises(InvalidRequest, match="limit must be from 1 to 500"):
        store.list_missions(limit=limit)
    with pytest.raises(InvalidRequest, match="claim limit"):
        store.claim("vp.general.primary", "w", limit=limit)


def test_sessions_register_touch_and_go_lost_when_silent(short_lease_store: MissionStore) -> None:
    store = short_lease_store
    store.register_session(worker_id="w1", vp_id="vp.general.primary", capacity=2, lane="external")
    store.touch_session("w1", status="busy", active_missions=1)
    (s,) = store.list_sessions(vp_id="vp.general.primary")
    assert (s.status, s.capacity, s.active_missions, s.lane) == ("busy", 2, 1, "external")
    time.sleep(0.3)
    assert store.list_sessions()[0].status == "lost"
    store.touch_session("w1", status="stopped", active_missions=0)
    assert store.list_sessions()[0].status == "stopped"


def test_release_gives_a_mission_back_unless_its_cancel_was_asked(store: MissionStore) -> None:
    kept = store.enqueue(spec("keep me")).mission
    dropped = store.enqueue(spec("drop me")).mission
    running = {m.mission_id: m for m in store.claim(kept.vp_id, "draining-worker", limit=2)}
    store.request_cancel(dropped.mission_id)

    back = store.release(kept.mission_id, running[kept.mission_id].lease_token or "", reason="worker_shutdown")
    ended = store.release(dropped.mission_id, running[dropped.mission_id].lease_token or "", reason="worker_shutdown")

    assert back is not None and back.status is Status.QUEUED and event_types(store, kept.mission_id)[-1] == "retried"
    assert ended is not None and ended.status is Status.CANCELLED, "a cancelled mission went back to the queue"
    assert store.claim(kept.vp_id, "next-worker", limit=2) == [store.get(kept.mission_id)]
    assert store.release(kept.mission_id, "stale-token", reason="worker_shutdown") is None


@pytest.mark.postgres
def test_a_cancel_racing_a_requeue_is_not_lost(pg_url: str) -> None:
    import threading

    from sqlalchemy import text

    from ua_vp.store import open_store

    store = open_store(pg_url)
    m = store.enqueue(spec()).mission
    store.claim(m.vp_id, "w1")
    # A reaper that has requeued the row but not committed yet holds its lock...
    with store.engine.connect() as reaper:
        tx = reaper.begin()
        reaper.execute(
            text("UPDATE vp_missions SET status='queued', lease_token=NULL WHERE mission_id=:id"), {"id": m.mission_id}
        )
        answer: list[object] = []
        asker = threading.Thread(target=lambda: answer.append(store.request_cancel(m.mission_id)))
        asker.start()
        time.sleep(0.3)  # ...while the cancel waits on that lock
        tx.commit()
        asker.join(timeout=10)
    (outcome,) = answer
    assert outcome.changed  # type: ignore[attr-defined]
    assert store.get(m.mission_id).status is Status.CANCELLED
