"""Many claimers, one queue: every mission claimed exactly once."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore, open_store
from ua_vp.store.tables import events

VP = "vp.general.primary"


def _fill(store: MissionStore, n: int) -> None:
    for i in range(n):
        store.enqueue(MissionSpec.create(vp_id=VP, objective=f"mission {i}"))


def _drain(url: str, worker_id: str, batch: int) -> list[str]:
    """Claim and finalize until the queue is empty; return the missions this claimer ran."""
    store = open_store(url)
    ran: list[str] = []
    try:
        while claimed := store.claim(VP, worker_id, limit=batch):
            for m in claimed:
                done = store.finalize(m.mission_id, m.lease_token or "", Status.COMPLETED, result={"by": worker_id})
                assert done is not None
                ran.append(m.mission_id)
    finally:
        store.engine.dispose()
    return ran


def _assert_exactly_once(store: MissionStore, ran: list[str], n: int) -> None:
    counts = Counter(ran)
    assert len(counts) == n, f"{n - len(counts)} missions never claimed"
    assert max(counts.values()) == 1, "a mission was claimed twice"
    finished = store.list_missions(statuses=[Status.COMPLETED], limit=500)
    assert all(m.attempt == 1 for m in finished)
    with store.engine.connect() as conn:
        started = conn.execute(events.select().where(events.c.event_type == "vp.mission.started")).fetchall()
    assert len(started) == n


@pytest.mark.postgres
@pytest.mark.parametrize("batch", [1, 10])
def test_eight_claimers_on_postgres_take_each_of_2000_missions_once(pg_url: str, batch: int) -> None:
    store = open_store(pg_url)
    _fill(store, 2000)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: _drain(pg_url, f"w{i}", batch), range(8)))
    _assert_exactly_once(store, [m for r in results for m in r], 2000)
    assert sum(1 for r in results if r) >= 2, "the claimers did not actually run concurrently"


def _process_drain(url: str, worker_id: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(_drain(url, worker_id, 5))


def test_four_processes_on_sqlite_take_each_mission_once(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    _fill(store, 600)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_drain, args=(sqlite_url, f"p{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    _assert_exactly_once(store, [m for r in results for m in r], 600)


def test_concurrent_identical_dispatches_make_one_mission(db_url: str) -> None:
    store = open_store(db_url)
    barrier = threading.Barrier(8)

    def dispatch(_: int) -> tuple[str, bool]:
        barrier.wait()
        enq = store.enqueue(MissionSpec.create(vp_id=VP, objective="once", idempotency_key="same-turn"))
        return enq.mission.mission_id, enq.created

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(dispatch, range(8)))
    assert len({mission_id for mission_id, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    assert len(store.list_missions()) == 1


def test_events_table_only_takes_known_missions(store: MissionStore) -> None:
    # The foreign key keeps history from pointing at nothing.
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            insert(events).values(
                mission_id="vpm_missing", vp_id=VP, event_type="x", payload={}, created_at=datetime.now(UTC)
            )
        )
