"""The smallest reproductions of what the chaos runs found.

1. When PostgreSQL goes away. A worker retries DBAPIErrors (``ua_vp.worker.DB_RETRY``)
   and nothing else, so every store call that meets a dropped connection must fail
   with one, and the next call on a fresh connection must work.
2. A worker frozen in the middle of writing progress (SIGSTOP, a GC or VM pause)
   must not write it once its lease has gone to another worker.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import text

from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore, open_store
from ua_vp.worker import _is_transient

from .harness import LEASE, RETRYING_LOG, VP, PgCluster, WorkerPool, patiently


def _conninfo(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _drop_the_pooled_connection(store: MissionStore, admin_url: str) -> None:
    """What a server restart or failover does to a connection resting in the pool."""
    with store.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(_conninfo(admin_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.mark.postgres
def test_a_store_call_on_a_dropped_connection_fails_with_an_error_the_worker_retries(pg_url: str) -> None:
    store = open_store(pg_url, lease_ttl_seconds=LEASE, pool_size=1)
    try:
        _drop_the_pooled_connection(store, pg_url)
        with pytest.raises(DBAPIError) as failure:
            store.reap()  # any write transaction (MissionStore._tx) meets the dead connection
        assert _is_transient(failure.value)
        assert store.reap() == []  # and the retry, on a fresh connection, works
    finally:
        store.engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_an_idle_worker_outlives_a_postgres_restart_and_serves_the_next_mission(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    pool = WorkerPool(pg_cluster.url, tmp_path, concurrency=1)
    store = open_store(pg_cluster.url, lease_ttl_seconds=LEASE)
    try:
        worker = pool.start()
        deadline = time.monotonic() + 30
        while "worker_started" not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        pg_cluster.stop()
        time.sleep(3)
        pg_cluster.start()
        mission = patiently(lambda: store.enqueue(MissionSpec.create(vp_id=VP, objective="after the restart"))).mission
        deadline = time.monotonic() + 30
        while not patiently(lambda: store.get(mission.mission_id)).status.terminal and time.monotonic() < deadline:
            if worker.proc.poll() is not None:
                break
            time.sleep(0.2)

        assert worker.proc.poll() is None, f"the worker died with the database:\n{worker.log()[-3000:]}"
        assert worker.count(RETRYING_LOG) > 0
        assert store.get(mission.mission_id).status is Status.COMPLETED
    finally:
        pool.cleanup()
        store.engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_worker_started_while_postgres_is_down_waits_for_it(pg_cluster: PgCluster, tmp_path: Path) -> None:
    pool = WorkerPool(pg_cluster.url, tmp_path, concurrency=1)
    store = open_store(pg_cluster.url, lease_ttl_seconds=LEASE)
    try:
        pg_cluster.stop()
        worker = pool.start()  # e.g. a supervisor restarting a crashed worker during a failover
        time.sleep(5)
        assert worker.proc.poll() is None, f"the worker exited with {worker.proc.returncode}:\n{worker.log()[-2000:]}"

        pg_cluster.start()
        mission = patiently(lambda: store.enqueue(MissionSpec.create(vp_id=VP, objective="after the outage"))).mission
        deadline = time.monotonic() + 30
        while not patiently(lambda: store.get(mission.mission_id)).status.terminal and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.get(mission.mission_id).status is Status.COMPLETED, worker.log()[-2000:]
    finally:
        pool.cleanup()
        store.engine.dispose()


@pytest.mark.postgres
def test_progress_from_a_worker_whose_lease_ran_out_mid_write_never_lands_after_the_end(pg_url: str) -> None:
    stale = open_store(pg_url, lease_ttl_seconds=0.2)  # the worker that will freeze
    others = open_store(pg_url, lease_ttl_seconds=LEASE)  # every other worker
    try:
        mission = others.enqueue(MissionSpec.create(vp_id=VP, objective="progress, then a long pause")).mission
        (claimed,) = stale.claim(VP, "stale-worker")
        token = claimed.lease_token or ""

        # Freeze the stale worker inside add_progress, just before it writes the events (on
        # PostgreSQL the lease check and the insert are one statement: frozen before both).
        frozen, thaw = threading.Event(), threading.Event()

        @event.listens_for(stale.engine, "before_cursor_execute")
        def freeze(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if "INSERT INTO VP_MISSION_EVENTS" in statement.upper():
                frozen.set()
                thaw.wait(30)

        wrote: list[bool] = []
        late = [{"line": "written by a worker that froze"}]
        writer = threading.Thread(target=lambda: wrote.append(stale.add_progress(mission.mission_id, token, late)))
        writer.start()
        assert frozen.wait(10)
        time.sleep(0.4)  # its 0.2 s lease runs out

        # Meanwhile another worker takes the mission over and finishes it, if the store lets it.
        if others.reap():
            (again,) = others.claim(VP, "other-worker")
            assert others.finalize(mission.mission_id, again.lease_token or "", Status.COMPLETED) is not None
        thaw.set()
        writer.join(30)

        kinds = [e.event_type.removeprefix("vp.mission.") for e in others.events(mission.mission_id)]
        ended_last = "completed" not in kinds or kinds[-1] == "completed"
        assert ended_last, f"progress landed after the end: {kinds} (add_progress returned {wrote})"
    finally:
        stale.engine.dispose()
        others.engine.dispose()


def test_on_sqlite_a_read_does_not_queue_behind_a_writer(sqlite_url: str) -> None:
    store = open_store(sqlite_url, lease_ttl_seconds=LEASE)
    mission = store.enqueue(MissionSpec.create(vp_id=VP, objective="read me")).mission
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # a worker frozen inside a claim or a finalize
    try:
        reader = threading.Thread(target=store.get, args=(mission.mission_id,))
        reader.start()
        reader.join(2)
        waited = reader.is_alive()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        reader.join(30)
        store.engine.dispose()
    assert not waited, "a read waited for the write lock"
