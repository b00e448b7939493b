"""ua-vp's MissionStore: enqueue, claim+finalize, and claim latency at queue depth.

Claimers are processes, each with its own one-connection store, exactly as separate
worker processes would be.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from baselines import raw_claim_variant, raw_insert_variant
from common import (
    NOOP_VP,
    Figure,
    Options,
    execute,
    percentile,
    run_claimers,
    scratch_database,
    sqlalchemy_url,
    throughput,
    until,
)

RESULT = {"summary": "noop", "artifacts": [], "usage": {}, "runtime": "noop", "model_ran": False}


def migrate(url: str) -> None:
    from ua_vp.store import db

    engine = db.make_engine(sqlalchemy_url(url), pool_size=1)
    db.upgrade(engine)
    engine.dispose()


def bulk_missions_sql(n: int, *, status: str = "queued", prefix: str = "q") -> str:
    """``n`` missions in one INSERT ... SELECT, oldest first, shaped like ``MissionStore.enqueue``'s rows
    (no dispatched events: the claim never reads them)."""
    finished = status != "queued"
    return f"""
        INSERT INTO vp_missions (mission_id, vp_id, mission_type, objective, constraints, budget, status,
            priority, attempt, max_attempts, lane, reply_mode, created_at, started_at, finished_at, result)
        SELECT 'vpm_{prefix}' || lpad(g::text, 12, '0'), '{NOOP_VP}', 'task', 'noop', '{{}}', '{{}}', '{status}',
            100, {1 if finished else 0}, 3, 'external', 'async',
            now() - ({n} - g) * interval '1 millisecond',
            {"now()" if finished else "NULL"}, {"now()" if finished else "NULL"},
            {"'{}'::jsonb" if finished else "NULL"}
        FROM generate_series(1, {n}) g
        """


def bulk_missions(url: str, n: int, *, status: str = "queued", prefix: str = "q") -> None:
    execute(url, bulk_missions_sql(n, status=status, prefix=prefix))


def reset(url: str) -> None:
    execute(url, "TRUNCATE vp_missions, vp_mission_events, vp_sessions")


def vacuum(url: str) -> None:
    execute(url, "VACUUM ANALYZE vp_missions", "VACUUM ANALYZE vp_mission_events")


def open_one(url: str) -> Any:
    from ua_vp.store.store import open_store

    return open_store(sqlalchemy_url(url), pool_size=1)


# -- claimers (run in their own processes) -------------------------------------------------
def store_claimer(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    """The worker's hot path without the worker: claim up to ``batch``, finalize each one."""
    from ua_vp.missions import Status

    store = open_one(args["url"])
    worker_id = f"bench-{index}"
    ready()
    more, count, t0 = until(args["seconds"]), 0, time.monotonic()
    while more():
        claimed = store.claim(NOOP_VP, worker_id, args["batch"])
        if not claimed:
            break
        for m in claimed:
            store.finalize(m.mission_id, m.lease_token, Status.COMPLETED, result=RESULT)
        count += len(claimed)
    return {"count": count, "t0": t0, "t1": time.monotonic()}


def store_enqueuer(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    from ua_vp.missions import MissionSpec

    store = open_one(args["url"])
    spec = MissionSpec.create(vp_id=NOOP_VP, objective="noop")
    ready()
    more, count, t0 = until(args["seconds"]), 0, time.monotonic()
    while more():
        store.enqueue(spec)
        count += 1
    return {"count": count, "t0": t0, "t1": time.monotonic()}


# -- scenarios ----------------------------------------------------------------------------------
def claim_figures(opts: Options, url: str, label: str, fn: Any, notes: str, **extra: Any) -> list[Figure]:
    """claim+finalize throughput with 1 and 8 claimers, claiming 1 or 10 at a time, each on a fresh queue."""
    figures = []
    for batch in (1, 10):
        for n in (1, 8):
            reset(url)
            bulk_missions(url, int(10_000 * opts.seconds))
            vacuum(url)
            rate, count, secs = throughput(
                run_claimers(fn, n, {"url": url, "batch": batch, "seconds": opts.seconds, **extra})
            )
            figures.append(
                Figure(
                    label,
                    f"claim{'' if batch == 1 else batch}+finalize x{n}",
                    rate,
                    "missions/s",
                    f"{count} in {secs:.1f} s; {notes}",
                    raw_variant=raw_claim_variant(batch, n),
                )
            )
    return figures


def _traced_round_trips(store: Any, k: int) -> int:
    """Round trips of k claim(limit=1) + finalize on a fresh connection, counted in libpq's own
    protocol trace: each Sync (extended protocol) or Query (simple protocol) the client sends
    is one wait for the server."""
    from ua_vp.missions import Status

    store.engine.dispose()
    traced: list[Any] = []
    with tempfile.TemporaryFile("w+") as trace:

        def _trace(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.pgconn.trace(trace.fileno())
            traced.append(dbapi_conn)

        event.listen(store.engine, "connect", _trace)
        for _ in range(k):
            for m in store.claim(NOOP_VP, "rt", 1):
                store.finalize(m.mission_id, m.lease_token, Status.COMPLETED, result=RESULT)
        for dbapi_conn in traced:
            dbapi_conn.pgconn.untrace()  # flushes libpq's buffered trace
        store.engine.dispose()
        event.remove(store.engine, "connect", _trace)
        trace.seek(0)
        return sum(1 for line in trace if re.search(r"\tF\t\d+\t(Sync|Query)\b", line))


def round_trips_per_mission(url: str) -> float:
    """The difference of two runs (10 and 30 missions) leaves out connection set-up and
    psycopg's one-off statement preparation (after 5 executions)."""
    store = open_one(url)
    few, many = _traced_round_trips(store, 10), _traced_round_trips(store, 30)
    return (many - few) / 20


def scenario_store(opts: Options) -> list[Figure]:
    with scratch_database(opts, "store") as url:
        migrate(url)
        figures = claim_figures(
            opts, url, "store", store_claimer, "MissionStore.claim + finalize each, 1 connection per process"
        )
        reset(url)
        bulk_missions(url, 100)  # 40 are used
        figures.append(
            Figure(
                "store",
                "round trips per claim+finalize",
                round_trips_per_mission(url),
                "round trips",
                "counted in the libpq protocol trace; raw pays 2",
                kind="count",
            )
        )
        for n in (1, 8):
            reset(url)
            rate, count, secs = throughput(run_claimers(store_enqueuer, n, {"url": url, "seconds": opts.seconds}))
            figures.append(
                Figure(
                    "store",
                    f"enqueue x{n}",
                    rate,
                    "missions/s",
                    f"{count} in {secs:.1f} s; INSERT + event + NOTIFY in one transaction",
                    raw_variant=raw_insert_variant(n),
                )
            )
    return figures


def _timed_claims(url: str, k: int) -> list[float]:
    from ua_vp.missions import Status

    store = open_one(url)
    out = []
    for _ in range(k):
        t0 = time.perf_counter()
        for m in store.claim(NOOP_VP, "depth", 1):
            store.finalize(m.mission_id, m.lease_token, Status.COMPLETED, result=RESULT)
        out.append((time.perf_counter() - t0) * 1000)
    store.engine.dispose()
    return out


def scenario_depth(opts: Options) -> list[Figure]:
    k = opts.pick(300, 1000)
    setups = [("1k queued", 1_000, 0), ("100k queued", 100_000, 0), ("1k queued + 100k finished", 1_000, 100_000)]
    if opts.full:
        setups.append(("1M queued", 1_000_000, 0))
    figures: list[Figure] = []
    base_p50 = None
    with scratch_database(opts, "depth") as url:
        migrate(url)
        for label, queued, finished in setups:
            reset(url)
            if finished:
                bulk_missions(url, finished, status="completed", prefix="f")
            # Topped up by what the run will take, so the queue never drops below its label.
            bulk_missions(url, queued + k + 20)
            vacuum(url)
            _timed_claims(url, 20)  # warm the cache and the prepared statements
            ms = _timed_claims(url, k)
            p50 = percentile(ms, 50)
            base_p50 = base_p50 or p50
            note = f"{k} sequential claim(limit=1)+finalize, 1 claimer; p50 = {p50 / base_p50:.2f}x the 1k queue's"
            for p in (50, 95, 99):
                figures.append(Figure("depth", f"{label} p{p}", percentile(ms, p), "ms", note, kind="latency"))
    return figures
