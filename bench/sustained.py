"""Sustained load: a producer enqueues at a steady rate for minutes while 8 claimers drain.

Does throughput or claim latency degrade as finished rows pile up in ``vp_missions``
(table and index bloat, dead tuples)? The rate is 65% of the store's claim+finalize x8
capacity, measured on the same database just before (10 s, 5 s with --quick).
Every window (a minute; a sixth of the run when it is shorter than 3 minutes) records:
missions finalized, claim latency p50/p95/p99 (``MissionStore.claim`` calls that got a
mission), queue depth, table and queue-index size, and dead tuples, all at the window's end.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from common import NOOP_VP, Figure, Options, percentile, run_claimers, scratch_database, throughput
from ua_store import RESULT, bulk_missions, migrate, open_one, reset, store_claimer, vacuum

CLAIMERS = 8
LOAD = 0.65
IDLE_SLEEP = 0.01
"""An empty claim waits this long before the next (the worker would wait on LISTEN)."""
SAMPLE = """
SELECT (SELECT count(*) FROM vp_missions WHERE status = 'queued'),
       (SELECT count(*) FROM vp_missions),
       pg_total_relation_size('vp_missions'), pg_relation_size('ix_vp_missions_queue'),
       pg_total_relation_size('vp_mission_events'), s.n_dead_tup, s.autovacuum_count
FROM pg_stat_user_tables s WHERE s.relname = 'vp_missions'
"""
SAMPLE_KEYS = ("queued", "rows", "table_bytes", "index_bytes", "events_bytes", "dead", "autovacuums")


# -- in the child processes -------------------------------------------------------------------
def _wait_start(args: dict[str, Any]) -> tuple[float, float]:
    start = args["start"]
    time.sleep(max(0.0, start - time.monotonic()))
    return start, start + args["seconds"]


def _window(args: dict[str, Any], start: float, now: float) -> int:
    return min(int((now - start) / args["window"]), args["windows"] - 1)


def sustained_worker(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    """Index 0 is the producer, the others claim+finalize; counts and latencies per window."""
    from ua_vp.missions import MissionSpec, Status

    store = open_one(args["url"])
    spec = MissionSpec.create(vp_id=NOOP_VP, objective="noop")
    counts, empty = [0] * args["windows"], [0] * args["windows"]
    latencies: list[list[float]] = [[] for _ in range(args["windows"])]
    ready()
    start, stop = _wait_start(args)
    sent = 0
    while (now := time.monotonic()) < stop:
        if index == 0:  # the producer: mission i is due at start + i / rate, late ones go at once
            due = start + sent / args["rate"]
            if due > now:
                time.sleep(min(due, stop) - now)
                continue
            t0 = time.perf_counter()
            store.enqueue(spec)
            sent += 1
            w = _window(args, start, time.monotonic())
            counts[w] += 1
            latencies[w].append((time.perf_counter() - t0) * 1000)
            continue
        t0 = time.perf_counter()
        claimed = store.claim(NOOP_VP, f"sustained-{index}", 1)
        ms = (time.perf_counter() - t0) * 1000
        if not claimed:
            empty[_window(args, start, time.monotonic())] += 1
            time.sleep(IDLE_SLEEP)
            continue
        for m in claimed:
            store.finalize(m.mission_id, m.lease_token, Status.COMPLETED, result=RESULT)
        w = _window(args, start, time.monotonic())
        counts[w] += len(claimed)
        latencies[w].append(ms)
    store.engine.dispose()
    end = time.monotonic()
    return {"count": sum(counts), "t0": start, "t1": end, "counts": counts, "ms": latencies, "empty": empty}


# -- in the parent -----------------------------------------------------------------------------
def _sampler(url: str, start: float, ends: list[float], out: list[dict[str, Any]]) -> threading.Thread:
    """Samples the table at ``start`` and at each window's end, in a thread beside the run."""

    def run() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            for at in [start, *ends]:
                time.sleep(max(0.0, at - time.monotonic()))
                row = conn.execute(SAMPLE).fetchone()  # type: ignore[arg-type]
                out.append(dict(zip(SAMPLE_KEYS, row or (), strict=True)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _capacity(opts: Options, url: str) -> tuple[float, str]:
    seconds = opts.pick(5.0, 10.0)
    reset(url)
    bulk_missions(url, int(3_000 * seconds))
    vacuum(url)
    rate, count, secs = throughput(run_claimers(store_claimer, CLAIMERS, {"url": url, "batch": 1, "seconds": seconds}))
    return rate, f"claim+finalize x{CLAIMERS} capacity {rate:,.0f}/s ({count} in {secs:.1f} s)"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def scenario_sustained(opts: Options, seconds: float | None = None) -> list[Figure]:
    seconds = seconds or opts.pick(60.0, 600.0)
    window = 60.0 if seconds >= 180 else seconds / 6
    windows = math.ceil(seconds / window - 1e-9)
    with scratch_database(opts, "sustained") as url:
        migrate(url)
        capacity, capacity_note = _capacity(opts, url)
        rate = LOAD * capacity
        reset(url)
        vacuum(url)
        start = time.monotonic() + 20  # spawning and importing take a few seconds
        ends = [start + min((w + 1) * window, seconds) for w in range(windows)]
        samples: list[dict[str, Any]] = []
        sampler = _sampler(url, start, ends, samples)
        args = {"url": url, "rate": rate, "start": start, "seconds": seconds, "window": window, "windows": windows}
        results = run_claimers(sustained_worker, CLAIMERS + 1, args, timeout=seconds + 180)
        sampler.join(timeout=30)
    sent, drained = results[0], results[1:]
    figures, rates, p50s = [], [], []
    head = f"rate {rate:,.0f}/s = {LOAD:.0%} of {capacity_note}; {CLAIMERS} claimers, claim(limit=1)+finalize"
    print(f"   {head}", file=sys.stderr)
    for w in range(windows):
        length = ends[w] - (ends[w - 1] if w else start)
        done = sum(r["counts"][w] for r in drained)
        ms = [x for r in drained for x in r["ms"][w]]
        p = [percentile(ms, q) for q in (50, 95, 99)]
        s = samples[w + 1] if w + 1 < len(samples) else {k: 0 for k in SAMPLE_KEYS}
        rates.append(done / length)
        p50s.append(p[0])
        note = (
            f"claim p50/p95/p99 {p[0]:.2f}/{p[1]:.2f}/{p[2]:.2f} ms; enqueued {sent['counts'][w] / length:,.0f}/s "
            f"(enqueue p50 {percentile(sent['ms'][w], 50):.2f} ms); empty claims "
            f"{sum(r['empty'][w] for r in drained) / length:,.0f}/s; "
            f"queued {s['queued']}; vp_missions {s['rows']} rows, {_mb(s['table_bytes'])}, "
            f"ix_vp_missions_queue {_mb(s['index_bytes'])}, n_dead_tup {s['dead']}, "
            f"autovacuums {s['autovacuums']}; vp_mission_events {_mb(s['events_bytes'])}"
        )
        label = f"{w * window:.0f}-{w * window + length:.0f} s"
        print(f"   {label}: {rates[-1]:,.0f}/s; {note}", file=sys.stderr, flush=True)
        figures.append(Figure("sustained", label, rates[-1], "missions/s", note))
    first, last = samples[1] if len(samples) > 1 else {}, samples[-1]
    summary = [
        ("throughput last/first window", rates[-1] / rates[0] if rates[0] else 0.0, "ratio", head),
        ("claim p50 last/first window", p50s[-1] / p50s[0] if p50s[0] else 0.0, "ratio", head),
        (
            "vp_missions growth first->last window",
            last["table_bytes"] / 1e6,
            "MB",
            f"{_mb(first.get('table_bytes', 0))} -> {_mb(last['table_bytes'])}; ix_vp_missions_queue "
            f"{_mb(first.get('index_bytes', 0))} -> {_mb(last['index_bytes'])}; n_dead_tup {last['dead']}",
        ),
    ]
    figures += [Figure("sustained", v, x, u, n, kind="count") for v, x, u, n in summary]
    return figures


def goals(figures: list[Figure]) -> list[dict[str, Any]]:
    found = {f.variant: f.value for f in figures if f.scenario == "sustained"}
    out = []
    if (ratio := found.get("throughput last/first window")) is not None:
        out.append(
            {
                "goal": "sustained throughput falls no more than 20%",
                "compared": "missions/s last window / first window",
                "measured": round(ratio, 3),
                "target": ">= 0.8",
                "met": ratio >= 0.8,
            }
        )
    if (ratio := found.get("claim p50 last/first window")) is not None:
        out.append(
            {
                "goal": "sustained claim p50 (reported)",
                "compared": "claim p50 last window / first window",
                "measured": round(ratio, 3),
                "target": "-",
                "met": True,
            }
        )
    return out
