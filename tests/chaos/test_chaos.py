"""Chaos: real workers are killed with SIGKILL, frozen with SIGSTOP (some past their
lease) and, on PostgreSQL, cut off by a server restart while missions keep arriving.
Afterwards every mission has finished, exactly once, and every worker that was not
killed on purpose is still running.

The short runs (``slow``) run in CI; the long ones (``chaos``) by hand, with -s to
see the summary: ``.venv/bin/pytest tests/chaos -m chaos -s`` (or UA_VP_CHAOS=1).
Each run prints its seed; ``UA_VP_CHAOS_SEED=<seed>`` replays the same schedule.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from ua_vp.missions import Status
from ua_vp.store import open_store

from .harness import (
    FENCED_LOGS,
    LEASE,
    POLL,
    RETRYING_LOG,
    TERMINAL_EVENTS,
    Census,
    Chaos,
    ChaosPlan,
    PgCluster,
    Producer,
    WorkerPool,
    census,
    observer,
    unfinished_count,
)

SEED = int(os.environ.get("UA_VP_CHAOS_SEED") or random.randrange(1_000_000))


@dataclass(frozen=True)
class Scenario:
    workers: int
    missions: int
    produce_seconds: float
    """Missions arrive evenly over this long, while the chaos plays out."""
    plan: ChaosPlan
    concurrency: int = 4


# The last kill can come at the very end of the chaos window; what it stranded comes
# back one lease (and a poll) later. Everything past that is slack for a loaded machine.
FINISH_TIMEOUT = 2 * LEASE + 4 * POLL + 60

POSTGRES = [
    pytest.param(
        Scenario(4, 1_000, 20, ChaosPlan(seconds=20, kills=2, short_pauses=1, long_pauses=1, restarts=1, seed=SEED)),
        marks=[pytest.mark.slow, pytest.mark.timeout(300)],
        id="short",
    ),
    pytest.param(
        Scenario(4, 5_000, 120, ChaosPlan(seconds=120, kills=10, short_pauses=6, long_pauses=3, restarts=1, seed=SEED)),
        marks=[pytest.mark.chaos, pytest.mark.timeout(1200)],
        id="long",
    ),
]
SQLITE = [
    pytest.param(
        Scenario(2, 300, 15, ChaosPlan(seconds=15, kills=2, short_pauses=1, long_pauses=1, seed=SEED)),
        marks=[pytest.mark.slow, pytest.mark.timeout(300)],
        id="short",
    ),
    pytest.param(
        Scenario(2, 5_000, 100, ChaosPlan(seconds=100, kills=8, short_pauses=5, long_pauses=3, seed=SEED)),
        marks=[pytest.mark.chaos, pytest.mark.timeout(1200)],
        id="long",
    ),
]


@dataclass
class Outcome:
    scenario: Scenario
    pool: WorkerPool
    producer: Producer
    chaos: Chaos
    census: Census
    died: dict[str, int | None]
    """Workers not killed on purpose that had exited by the end (name -> exit code)."""
    shutdown: dict[str, int | None]
    """Exit code of each surviving worker after SIGTERM at the end."""
    listening: int | None
    seconds: float


def run_chaos(scenario: Scenario, url: str, tmp: Path, cluster: PgCluster | None = None) -> Outcome:
    """Workers, producer and chaos at once; then let the survivors finish, and stop them."""
    store = open_store(url, lease_ttl_seconds=LEASE)  # the producer's: enqueue like a gateway does
    db = observer(url)
    pool = WorkerPool(url, tmp, concurrency=scenario.concurrency)
    try:
        began = time.monotonic()
        for _ in range(scenario.workers):
            pool.start()
        producer = Producer(store, scenario.missions, scenario.produce_seconds)
        chaos = Chaos(scenario.plan, pool, db, cluster)
        producer.start()
        chaos.start()
        deadline = time.monotonic() + scenario.plan.seconds + 300
        while chaos.is_alive() and time.monotonic() < deadline:
            if producer.error is not None:
                chaos.halted.set()  # no point going on: report the producer's error now
            chaos.join(timeout=0.5)
        producer.join(timeout=scenario.produce_seconds + 300)
        assert not producer.is_alive() and producer.error is None, f"the producer failed: {producer.error!r}"
        assert not chaos.is_alive() and chaos.error is None, f"the chaos failed: {chaos.error!r}"

        # Chaos over: the survivors finish the rest, stranded missions once their lease ran out.
        deadline = time.monotonic() + FINISH_TIMEOUT
        while unfinished_count(db) and time.monotonic() < deadline:
            time.sleep(0.5)
        seconds = time.monotonic() - began

        survivors = pool.alive()
        died = {w.name: w.proc.returncode for w in survivors if w.proc.poll() is not None}
        listening = None
        if cluster is not None:
            # A LISTEN connection lost in the restart is reopened (with backoff up to 5 s).
            wanted = len(survivors) - len(died)
            deadline = time.monotonic() + 15
            while (listening := cluster.listening_backends()) != wanted and time.monotonic() < deadline:
                time.sleep(0.5)
        for w in survivors:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        shutdown = {w.name: _wait(w.proc) for w in survivors if w.name not in died}
        outcome = Outcome(scenario, pool, producer, chaos, census(db), died, shutdown, listening, seconds)
    finally:
        pool.cleanup()
        store.engine.dispose()
        db.dispose()
    report(outcome)
    return outcome


def _wait(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return None  # reported as an unclean shutdown


def report(out: Outcome) -> None:
    c, chaos = out.census, out.chaos
    summary = {
        "seconds": round(out.seconds, 1),
        "missions": len(c.rows),
        "missions_per_second": round(len(c.rows) / out.seconds, 1),
        "statuses": dict(Counter(r["status"] for r in c.rows.values())),
        "attempts": dict(sorted(Counter(r["attempt"] for r in c.rows.values()).items())),
        "retried_events": dict(c.retried_reasons()),
        "workers_started": len(out.pool.procs),
        **chaos.summary(),
        "fenced_log_lines": {e: sum(w.count(e) for w in out.pool.procs) for e in FENCED_LOGS},
        "retrying_log_lines": {w.name: w.count(RETRYING_LOG) for w in out.pool.procs if w.count(RETRYING_LOG)},
        "producer_outage_retries": out.producer.outage_retries[0],
        "producer_idempotent_replays": out.producer.replays,
        "listening_backends_at_end": out.listening,
    }
    text = json.dumps(summary)
    print(f"\nchaos summary: {text}")
    (out.pool.tmp / "chaos-summary.json").write_text(text)


# -- the claims --------------------------------------------------------------------------------
def assert_every_mission_was_finalized_exactly_once(out: Outcome) -> None:
    c, n = out.census, out.scenario.missions
    assert len(out.producer.ids) == n and set(c.rows) == set(out.producer.ids), "an enqueue made a second mission"
    unfinished = c.unfinished()
    assert not unfinished, f"{len(unfinished)} missions never finished, e.g. {unfinished[:3]}\n{out.pool.logs()}"
    not_completed = {m: (r["status"], r["error"]) for m, r in c.rows.items() if r["status"] != Status.COMPLETED}
    assert not_completed == {}, f"{len(not_completed)} missions did not complete"

    terminal = {m: [k for _, k, _ in c.events.get(m, []) if k in TERMINAL_EVENTS] for m in c.rows}
    twice = {m: t for m, t in terminal.items() if len(t) != 1}
    assert twice == {}, f"{len(twice)} missions finalized more than once (or not at all)"
    assert sum(len(t) for t in terminal.values()) == n
    written_after_the_end = {m: c.kinds(m) for m in c.rows if c.events[m][-1][1] not in TERMINAL_EVENTS}
    assert written_after_the_end == {}, "a stale worker wrote events after a mission ended"

    # Each claim writes one `started`; each lease that ran out, one `retried` first.
    starts = {m: c.kinds(m).count("started") for m in c.rows}
    miscounted = {m: (starts[m], r["attempt"]) for m, r in c.rows.items() if starts[m] != r["attempt"]}
    assert miscounted == {}, "started events != attempt"
    unexplained = {m: c.kinds(m) for m in c.rows if starts[m] != c.kinds(m).count("retried") + 1}
    assert unexplained == {}, "a mission was claimed again without being given back first"


def assert_the_chaos_happened_and_what_it_stranded_ran_again(out: Outcome) -> None:
    plan, chaos, c = out.scenario.plan, out.chaos, out.census
    assert len(chaos.kills) >= plan.kills
    assert sum(p.past_lease for p in chaos.pauses) == plan.long_pauses
    assert sum(not p.past_lease for p in chaos.pauses) == plan.short_pauses
    assert len(chaos.restarts) == plan.restarts and all(r.up_at > r.down_at for r in chaos.restarts)

    stranded = {m for k in chaos.kills for m in k.stranded}
    assert stranded, "no kill -9 caught a worker holding a mission: this run proved nothing about recovery"
    # A dead worker's missions come back only through an expired lease, and run again.
    not_recovered = {
        m: c.kinds(m)
        for m in stranded
        if c.rows[m]["attempt"] < 2
        or not any(k == "vp.mission.retried" and p.get("reason") == "lease_expired" for _, k, p in c.events[m])
    }
    assert not_recovered == {}


def assert_no_worker_died_unless_killed(out: Outcome) -> None:
    assert out.died == {}, f"workers exited by themselves: {out.died}\n{out.pool.logs(set(out.died))}"
    assert set(out.shutdown.values()) == {0}, f"not a clean SIGTERM shutdown after the chaos: {out.shutdown}"


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", POSTGRES)
def test_on_postgres_kills_pauses_and_a_server_restart_lose_no_mission_and_finalize_none_twice(
    scenario: Scenario, pg_cluster: PgCluster, tmp_path: Path
) -> None:
    out = run_chaos(scenario, pg_cluster.url, tmp_path, pg_cluster)

    assert_no_worker_died_unless_killed(out)
    assert_every_mission_was_finalized_exactly_once(out)
    assert_the_chaos_happened_and_what_it_stranded_ran_again(out)

    # Every worker that lived through the restart saw the database go away and waited for it.
    for restart in out.chaos.restarts:
        through_it = [
            w
            for w in out.pool.procs
            if w.started_at < restart.down_at and (w.killed_at is None or w.killed_at > restart.up_at)
        ]
        assert through_it, "no worker was running during the restart"
        blind = [w.name for w in through_it if w.count(RETRYING_LOG) == 0]
        assert blind == [], f"never logged {RETRYING_LOG}: {blind}"
    assert out.producer.outage_retries[0] > 0, "the producer never noticed the restart"
    # ...and came back listening: one LISTEN connection per surviving worker.
    assert out.listening == len(out.shutdown)


@pytest.mark.parametrize("scenario", SQLITE)
def test_on_sqlite_kills_and_pauses_lose_no_mission_and_finalize_none_twice(
    scenario: Scenario, sqlite_url: str, tmp_path: Path
) -> None:
    out = run_chaos(scenario, sqlite_url, tmp_path)

    assert_no_worker_died_unless_killed(out)
    assert_every_mission_was_finalized_exactly_once(out)
    assert_the_chaos_happened_and_what_it_stranded_ran_again(out)
