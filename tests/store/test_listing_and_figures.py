"""What the dashboard and /metrics read: keyset pages, id search, the last hour per
minute and the fleet snapshot, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time

import pytest
import sqlalchemy

from ua_vp.errors import InvalidRequest
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore
from ua_vp.store.observe import LATENCY_BUCKETS, snapshot, timeline

GENERAL = "vp.general.primary"
CODER = "vp.coder.primary"


def enqueue(store: MissionStore, n: int, vp_id: str = GENERAL) -> list[str]:
    return [
        store.enqueue(MissionSpec.create(vp_id=vp_id, objective=f"mission {i}")).mission.mission_id for i in range(n)
    ]


def test_pages_follow_each_other_newest_first_without_gaps_or_repeats(store: MissionStore) -> None:
    made = enqueue(store, 7)
    newest_first = [m.mission_id for m in store.list_missions(limit=500)]
    assert sorted(newest_first) == sorted(made)

    seen: list[str] = []
    before = None
    while True:
        page = [m.mission_id for m in store.list_missions(limit=3, before=before)]
        if not page:
            break
        seen += page
        before = page[-1]
    assert seen == newest_first


def test_paging_keeps_the_filters(store: MissionStore) -> None:
    general = enqueue(store, 4)
    enqueue(store, 3, CODER)
    store.claim(GENERAL, "w1", limit=2)
    queued_general = [m.mission_id for m in store.list_missions(vp_id=GENERAL, statuses=[Status.QUEUED])]
    assert len(queued_general) == 2 and set(queued_general) <= set(general)
    first = store.list_missions(vp_id=GENERAL, statuses=[Status.QUEUED], limit=1)
    rest = store.list_missions(vp_id=GENERAL, statuses=[Status.QUEUED], limit=5, before=first[0].mission_id)
    assert [m.mission_id for m in first + rest] == queued_general


def test_search_by_the_beginning_of_an_id_treats_wildcards_as_text(store: MissionStore) -> None:
    made = enqueue(store, 5)
    target = made[2]
    found = store.list_missions(id_prefix=target[:14])
    assert target in [m.mission_id for m in found]
    assert all(m.mission_id.startswith(target[:14]) for m in found)
    assert [m.mission_id for m in store.list_missions(id_prefix=target)] == [target]
    # LIKE wildcards in the search are literal characters, not patterns.
    assert store.list_missions(id_prefix="vpm%") == []
    assert store.list_missions(id_prefix="vpm__") == []


def test_paging_from_an_unknown_mission_is_a_clear_error(store: MissionStore) -> None:
    with pytest.raises(InvalidRequest, match="before"):
        store.list_missions(before="vpm_nope")


def test_timeline_counts_this_minutes_finished_missions_and_the_queue(store: MissionStore) -> None:
    enqueue(store, 5)
    claimed = store.claim(GENERAL, "w1", limit=3)
    for m in claimed[:2]:
        store.finalize(m.mission_id, m.lease_token or "", Status.COMPLETED, result={"summary": "ok"})
    points = timeline(store, minutes=60)
    assert len(points) == 60
    assert points[-1].finished == 2 and points[-1].queue_depth == 2
    assert sum(p.finished for p in points) == 2
    # An hour ago nothing was queued: the walk back undoes this minute's arrivals.
    assert points[0].queue_depth == 0
    assert [p.start for p in points] == sorted(p.start for p in points)
    assert timeline(store, minutes=5, vp_id=CODER)[-1].queue_depth == 0


def test_snapshot_counts_every_state_recovery_and_latency(short_lease_store: MissionStore, store: MissionStore) -> None:
    short, store = short_lease_store, store
    enqueue(store, 2, CODER)
    done, failed, retried, cancelled, _waiting = enqueue(store, 5)
    store.request_cancel(cancelled)
    claimed = {m.mission_id: m for m in short.claim(GENERAL, "w1", limit=3)}
    assert set(claimed) == {done, failed, retried}
    store.finalize(done, claimed[done].lease_token or "", Status.COMPLETED, result={"summary": "ok"})
    store.finalize(failed, claimed[failed].lease_token or "", Status.FAILED, error={"code": "boom", "message": "x"})
    time.sleep(0.3)
    assert [m.mission_id for m in short.reap()] == [retried]
    store.register_session(worker_id="w-live", vp_id=GENERAL, capacity=2, lane="external")

    snap = snapshot(store)
    assert snap.missions[(GENERAL, "completed")] == 1
    assert snap.missions[(GENERAL, "failed")] == 1
    assert snap.missions[(GENERAL, "cancelled")] == 1
    assert snap.missions[(GENERAL, "queued")] == 2  # the retried one and the one never claimed
    assert snap.missions[(CODER, "queued")] == 2
    assert snap.queue_depth == {GENERAL: 2, CODER: 2}
    assert snap.oldest_queued_age[GENERAL] >= 0.3
    assert snap.failures == {(GENERAL, "boom"): 1}
    assert snap.retries == {(GENERAL, "lease_expired"): 1}
    assert snap.cancel_requests == {GENERAL: 1}
    assert snap.sessions == {(GENERAL, "idle"): 1}

    wait = snap.queue_wait[GENERAL]
    assert wait.count == 3 and wait.buckets[-1] <= 3 and list(wait.buckets) == sorted(wait.buckets)
    assert len(wait.buckets) == len(LATENCY_BUCKETS)
    assert snap.run_time[GENERAL].count == 2  # done and failed; the retried one has not finished
    claims = snap.claim_latency[GENERAL]
    assert claims.count == 3 and 0 <= claims.total < 60
    # Silent for longer than a lease: lost (as the store with the short lease sees it).
    time.sleep(0.3)
    assert snapshot(short).sessions == {(GENERAL, "lost"): 1}


def test_the_newest_first_listing_reads_an_index_instead_of_sorting_every_mission(store: MissionStore) -> None:
    enqueue(store, 5)
    ran: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, params: object, context: object, many: bool) -> None:
        if "FROM vp_missions" in statement and "ORDER BY" in statement:
            ran.append((statement, params))

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        store.list_missions(limit=50)
    finally:
        sqlalchemy.event.remove(store.engine, "before_cursor_execute", capture)
    [(statement, params)] = ran
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        cursor = raw.cursor()
        if store.is_postgres:
            # A five-row table is cheaper to sort than to index-scan: rule the shortcut out.
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
        plan = "\n".join(str(row) for row in cursor.fetchall())
    assert "ix_vp_missions_created" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
