"""Real worker processes, real agent subprocesses, a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from ua_vp.missions import Status
from ua_vp.store import MissionStore

from .conftest import LEASE, POLL, VP, Workers, dispatch, pid_alive, wait_until


def event_types(store: MissionStore, mission_id: str) -> list[str]:
    return [e.event_type.removeprefix("vp.mission.") for e in store.events(mission_id)]


def test_a_dispatched_mission_completes_with_its_events_in_order(workers: Workers, wstore: MissionStore) -> None:
    m = dispatch(wstore, "say:hello say:world")
    workers.start()
    wait_until(lambda: wstore.get(m.mission_id).status.terminal, timeout=30, what="completion", logs=workers.logs)

    done = wstore.get(m.mission_id)
    assert done.status is Status.COMPLETED, done.error
    assert done.result and done.result["runtime"] == "command" and "world" in done.result["summary"]
    kinds = event_types(wstore, m.mission_id)
    assert kinds[:2] == ["dispatched", "started"] and kinds[-1] == "completed"
    assert set(kinds[2:-1]) == {"progress"} and len(kinds) >= 5
    lines = [e.payload.get("line") for e in wstore.events(m.mission_id) if e.event_type == "vp.mission.progress"]
    assert "hello" in lines and "world" in lines
    (session,) = wstore.list_sessions(vp_id=VP)
    assert session.status in ("idle", "busy") and session.capacity == 1


def test_agent_output_the_database_cannot_store_is_cleaned_not_retried_forever(
    workers: Workers, wstore: MissionStore
) -> None:
    m = dispatch(wstore, "nul say:after")
    workers.start("--once")
    wait_until(lambda: wstore.get(m.mission_id).status.terminal, timeout=30, what="completion", logs=workers.logs)
    assert wstore.get(m.mission_id).status is Status.COMPLETED
    lines = [e.payload.get("line") for e in wstore.events(m.mission_id) if e.event_type == "vp.mission.progress"]
    assert "a\ufffdb" in lines and "after" in lines


def test_the_worker_records_an_agent_failure_and_never_leaves_it_running(
    workers: Workers, wstore: MissionStore
) -> None:
    m = dispatch(wstore, "say:trying fail:3")
    workers.start("--once")
    wait_until(lambda: wstore.get(m.mission_id).status.terminal, timeout=30, what="failure", logs=workers.logs)
    failed = wstore.get(m.mission_id)
    assert failed.status is Status.FAILED
    assert failed.error and failed.error["code"] == "runtime_failed" and "3" in failed.error["message"]


def test_the_time_budget_fails_a_mission_and_kills_its_agent(
    workers: Workers, wstore: MissionStore, tmp_path: Path
) -> None:
    pidfile = tmp_path / "agent.pid"
    m = dispatch(wstore, f"pid:{pidfile} sleep:60", budget={"max_seconds": 1})
    workers.start()
    wait_until(lambda: wstore.get(m.mission_id).status.terminal, timeout=30, what="budget", logs=workers.logs)
    failed = wstore.get(m.mission_id)
    assert failed.status is Status.FAILED and failed.error and failed.error["code"] == "budget_exceeded"
    pid = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(pid), timeout=5, what="the agent to be gone")


def test_two_workers_share_the_load_and_run_nothing_twice(workers: Workers, wstore: MissionStore) -> None:
    missions = [dispatch(wstore, f"say:m{i} sleep:0.2") for i in range(16)]
    workers.start("--concurrency", "2")
    workers.start("--concurrency", "2")
    wait_until(
        lambda: all(wstore.get(m.mission_id).status.terminal for m in missions),
        timeout=60,
        what="all missions",
        logs=workers.logs,
    )
    done = [wstore.get(m.mission_id) for m in missions]
    assert all(m.status is Status.COMPLETED for m in done)
    assert all(event_types(wstore, m.mission_id).count("started") == 1 for m in done)
    by_worker = Counter(m.worker_id for m in done)
    assert len(by_worker) == 2, f"one worker did everything: {by_worker}"


@pytest.mark.parametrize("listen", ["1", "0"], ids=["listen", "poll-only"])
def test_cancel_kills_the_running_agent_and_ends_cancelled(
    workers: Workers, wstore: MissionStore, tmp_path: Path, listen: str
) -> None:
    pidfile = tmp_path / "agent.pid"
    m = dispatch(wstore, f"pid:{pidfile} sleep:120")
    # A long lease: its heartbeats (TTL/3 = 30 s) come far too late to carry the cancel.
    # Without LISTEN (UA_VP_LISTEN=0, or SQLite) the worker's per-poll watch alone must carry it.
    workers.start(UA_VP_LEASE_TTL_SECONDS="90", UA_VP_LISTEN=listen)
    wait_until(pidfile.exists, timeout=30, what="the agent to start", logs=workers.logs)
    pid = int(pidfile.read_text())

    wstore.request_cancel(m.mission_id)
    # The worker checks its running missions every poll (1 s) on every backend; at
    # once through NOTIFY on PostgreSQL. The margin is for a loaded CI machine
    # (bench/recovery.py measures the latency).
    wait_until(lambda: not pid_alive(pid), timeout=POLL + 5, what="the agent to be killed", logs=workers.logs)
    wait_until(lambda: wstore.get(m.mission_id).status.terminal, timeout=5, what="cancel", logs=workers.logs)
    cancelled = wstore.get(m.mission_id)
    assert cancelled.status is Status.CANCELLED
    kinds = event_types(wstore, m.mission_id)
    assert kinds[-1] == "cancelled" and kinds.index("cancel_requested") < kinds.index("cancelled")


def test_sigterm_drains_then_the_session_is_stopped(workers: Workers, wstore: MissionStore) -> None:
    m = dispatch(wstore, "sleep:1 say:finished")
    proc = workers.start()
    wait_until(lambda: wstore.get(m.mission_id).status is Status.RUNNING, timeout=30, what="start", logs=workers.logs)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, workers.logs()
    assert wstore.get(m.mission_id).status is Status.COMPLETED  # it finished within the grace period
    assert [s.status for s in wstore.list_sessions(vp_id=VP)] == ["stopped"]


def test_sigterm_past_the_grace_period_gives_the_mission_back(
    workers: Workers, wstore: MissionStore, tmp_path: Path
) -> None:
    pidfile = tmp_path / "agent.pid"
    m = dispatch(wstore, f"pid:{pidfile} sleep:120")
    proc = workers.start(UA_VP_SHUTDOWN_GRACE_SECONDS="0.5")
    wait_until(pidfile.exists, timeout=30, what="the agent to start", logs=workers.logs)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, workers.logs()
    back = wstore.get(m.mission_id)
    assert back.status is Status.QUEUED and back.attempt == 1
    assert event_types(wstore, m.mission_id)[-1] == "retried"
    assert not pid_alive(int(pidfile.read_text()))


def test_what_the_agent_said_before_a_shutdown_is_kept_when_the_mission_is_given_back(
    workers: Workers, wstore: MissionStore, tmp_path: Path
) -> None:
    # No grace: the worker stops the agent at once, before its usual progress flush.
    pidfile = tmp_path / "agent.pid"
    m = dispatch(wstore, f"say:last-words pid:{pidfile} sleep:120")
    proc = workers.start(UA_VP_SHUTDOWN_GRACE_SECONDS="0")
    wait_until(pidfile.exists, timeout=30, what="the agent to start", logs=workers.logs)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, workers.logs()
    assert wstore.get(m.mission_id).status is Status.QUEUED
    lines = [e.payload.get("line") for e in wstore.events(m.mission_id) if e.event_type == "vp.mission.progress"]
    assert "last-words" in lines, lines


@pytest.mark.slow
def test_kill_9_mid_mission_is_recovered_after_the_lease_and_finalized_once(
    workers: Workers, wstore: MissionStore, tmp_path: Path
) -> None:
    pidfile = tmp_path / "agent.pid"
    m = dispatch(wstore, f"pid:{pidfile} sleep:3 say:done")
    first = workers.start()
    wait_until(pidfile.exists, timeout=30, what="the first attempt", logs=workers.logs)
    first.kill()
    first.wait()
    killed_at = time.monotonic()
    pidfile.unlink()

    workers.start()
    wait_until(lambda: wstore.get(m.mission_id).status.terminal, timeout=LEASE + 30, what="recovery", logs=workers.logs)
    recovered_after = time.monotonic() - killed_at
    done = wstore.get(m.mission_id)
    assert done.status is Status.COMPLETED and done.attempt == 2
    kinds = event_types(wstore, m.mission_id)
    assert kinds.count("started") == 2 and kinds.count("retried") == 1 and kinds.count("completed") == 1
    assert recovered_after < LEASE + 1 + 3 + 5  # lease + poll + the 3 s mission + slack for a loaded machine


@pytest.mark.slow
def test_a_frozen_worker_past_its_lease_is_fenced_out_when_it_wakes(
    workers: Workers, wstore: MissionStore, tmp_path: Path
) -> None:
    pidfile = tmp_path / "agent.pid"
    m = dispatch(wstore, f"pid:{pidfile} sleep:2 say:by-first")
    frozen = workers.start()
    wait_until(pidfile.exists, timeout=30, what="the first attempt", logs=workers.logs)
    frozen.send_signal(signal.SIGSTOP)  # the agent child keeps running; its worker cannot heartbeat
    pidfile.unlink()

    second = workers.start()
    wait_until(
        lambda: wstore.get(m.mission_id).status.terminal, timeout=LEASE + 30, what="the rescue", logs=workers.logs
    )
    rescued = wstore.get(m.mission_id)
    assert rescued.status is Status.COMPLETED and rescued.attempt == 2

    frozen.send_signal(signal.SIGCONT)  # wakes, finishes its own run, tries to finalize
    time.sleep(3)
    final = wstore.get(m.mission_id)
    assert final == rescued, "the stale worker changed a terminal mission"
    assert event_types(wstore, m.mission_id).count("completed") == 1
    assert final.worker_id and second.pid and str(second.pid) in final.worker_id
    assert frozen.poll() is None or frozen.returncode == 0


@pytest.mark.postgres
def test_polling_alone_is_correct_without_listen(pg_url: str, tmp_path: Path) -> None:
    from ua_vp.store import open_store

    from .conftest import Workers as Pool

    store = open_store(pg_url, lease_ttl_seconds=LEASE)
    pool = Pool(pg_url, tmp_path)
    try:
        pool.start(UA_VP_LISTEN="0")
        time.sleep(1.5)  # the worker is idle and polling before the mission exists
        m = dispatch(store, "say:polled")
        wait_until(lambda: store.get(m.mission_id).status.terminal, timeout=15, what="a polled claim", logs=pool.logs)
        assert store.get(m.mission_id).status is Status.COMPLETED
        assert "LISTEN" not in pool.logs() and "listen_reconnecting" not in pool.logs()
    finally:
        pool.stop_all()
