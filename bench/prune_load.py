"""Retention under load: ``ua-vp db prune`` of N finished missions while 8 claimers run.

    bench/.venv/bin/python bench/prune_load.py --database-url postgresql://... [--rows 1000000]

or as the ``prune`` scenario of ``bench/bench.py`` (``--prune-rows``). The goal (issue 13):
no claim waits more than 100 ms while the prune runs.

N finished missions (finished 30 days ago, each with its dispatched, started, progress
and completed events) are loaded straight in SQL, next to a queue of no-op missions.
8 claimer processes run MissionStore.claim(limit=1) + finalize, one connection each, as
the ``store`` scenario's, and time every claim. After a baseline the real
``ua-vp db prune --older-than 7d`` runs as its own process; claims started before it are
the baseline, claims started while it ran are the figure, so both come from the same
processes on the same connections in the same run.

A sampler also counts the moments some backend of the database waits on a lock
(``pg_stat_activity``): a slow claim with no lock wait is the machine short of CPU,
not the prune in the claim's way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from common import NOOP_VP, Figure, Options, percentile, run_claimers, scratch_database, sqlalchemy_url
from ua_store import RESULT, bulk_missions, migrate, open_one, vacuum

ROWS = 1_000_000
CLAIMERS = 8
EVENTS_PER_MISSION = 4
LIMIT_MS = 100.0
OLDER_THAN = "7d"
WARMUP_SECONDS = 2.0
"""Claims this long after the claimers start are left out: connections, prepared statements, caches."""
SAMPLE_EVERY = 0.1
LOCK_WAITS = """
SELECT a.wait_event, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 50),
       coalesce(left(regexp_replace(b.query, '\\s+', ' ', 'g'), 50), '?')
FROM pg_stat_activity a LEFT JOIN pg_stat_activity b ON b.pid = (pg_blocking_pids(a.pid))[1]
WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()
"""


# -- the data -------------------------------------------------------------------------------------
def finished_missions_sql(n: int) -> str:
    """``n`` completed missions that finished 30 days ago and more, oldest first."""
    age = f"interval '30 days' + ({n} - g) * interval '1 millisecond'"
    return f"""
        INSERT INTO vp_missions (mission_id, vp_id, mission_type, objective, constraints, budget, status,
            priority, attempt, max_attempts, lane, worker_id, reply_mode, result, created_at, started_at, finished_at)
        SELECT 'vpm_f' || lpad(g::text, 12, '0'), '{NOOP_VP}', 'task', 'noop', '{{}}', '{{}}', 'completed',
            100, 1, 3, 'external', 'bench-old', 'async', '{{"summary": "noop", "artifacts": []}}'::jsonb,
            now() - {age} - interval '2 seconds', now() - {age} - interval '1 second', now() - {age}
        FROM generate_series(1, {n}) g
        """


def finished_events_sql(n: int, per_mission: int) -> str:
    """Each finished mission's events, in mission order: dispatched, started, progress..., completed."""
    kinds = (
        f"CASE WHEN k = 1 THEN 'vp.mission.dispatched' WHEN k = 2 THEN 'vp.mission.started' "
        f"WHEN k = {per_mission} THEN 'vp.mission.completed' ELSE 'vp.mission.progress' END"
    )
    return f"""
        INSERT INTO vp_mission_events (mission_id, vp_id, event_type, payload, created_at)
        SELECT 'vpm_f' || lpad(g::text, 12, '0'), '{NOOP_VP}', {kinds}, jsonb_build_object('n', k),
            now() - interval '30 days' - ({n} - g) * interval '1 millisecond' - interval '2 seconds'
                + k * interval '10 milliseconds'
        FROM generate_series(1, {n}) g, generate_series(1, {per_mission}) k
        ORDER BY g, k
        """


def load(url: str, rows: int, events_per_mission: int, queued: int) -> float:
    """Seconds to load, vacuum and checkpoint ``rows`` finished missions and ``queued`` queued ones."""
    t0 = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        # The rows are consistent by construction; skipping the foreign-key trigger per
        # event only makes the load faster (the prune still pays the cascade check).
        conn.execute("SET session_replication_role = replica")
        conn.execute(finished_missions_sql(rows))  # type: ignore[arg-type]
        conn.execute(finished_events_sql(rows, events_per_mission))  # type: ignore[arg-type]
    bulk_missions(url, queued, prefix="q")
    vacuum(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return time.monotonic() - t0


# -- in the claimer processes -------------------------------------------------------------------
def prune_claimer(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    """claim(limit=1) + finalize until the stop file appears; every claim's start and duration."""
    from ua_vp.missions import Status

    store = open_one(args["url"])
    stop = Path(args["stop_file"])
    worker_id = f"prune-bench-{index}"
    ready()
    if index == 0:
        Path(args["started_file"]).touch()
    starts: list[float] = []
    claim_ms: list[float] = []
    finalize_ms: list[float] = []
    empty = 0
    t0 = time.monotonic()
    while not stop.exists():
        s = time.monotonic()
        claimed = store.claim(NOOP_VP, worker_id, 1)
        c = time.monotonic()
        for m in claimed:
            store.finalize(m.mission_id, m.lease_token, Status.COMPLETED, result=RESULT)
        starts.append(s)
        claim_ms.append((c - s) * 1000)
        finalize_ms.append((time.monotonic() - c) * 1000 if claimed else -1.0)
        empty += not claimed
    store.engine.dispose()
    return {
        "count": len(starts),
        "t0": t0,
        "t1": time.monotonic(),
        "starts": starts,
        "claim_ms": claim_ms,
        "finalize_ms": finalize_ms,
        "empty": empty,
    }


# -- the run ------------------------------------------------------------------------------------
class LockSampler(threading.Thread):
    """Every :data:`SAMPLE_EVERY` s: how many backends of the database wait on a lock."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, list[tuple[str, str, str]]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.wait(SAMPLE_EVERY):
                waits = [(str(e), str(q), str(b)) for e, q, b in conn.execute(LOCK_WAITS)]
                self.samples.append((time.monotonic(), waits))

    def between(self, t0: float, t1: float) -> tuple[int, int, int, str]:
        """In [t0, t1): samples, samples with a lock wait, most backends waiting at once,
        and what waited on what (lock type, statement, blocking statement; most seen first)."""
        got = [w for t, w in self.samples if t0 <= t < t1]
        seen = Counter(f"{e}: `{q}` behind `{b}`" for w in got for e, q, b in w)
        what = ", ".join(f"{n}x {k}" for k, n in seen.most_common(3))
        return len(got), sum(1 for w in got if w), max((len(w) for w in got), default=0), what


def run_prune(opts: Options, url: str) -> tuple[float, float, dict[str, Any]]:
    """The real command, as an operator runs it: (start, end, its --json answer)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(UA_VP_DATABASE_URL=sqlalchemy_url(url), UA_VP_STATE_DIR=str(opts.work_dir / "prune-state"))
    ua_vp = Path(sys.executable).with_name("ua-vp")
    t0 = time.monotonic()
    done = subprocess.run(
        [str(ua_vp), "db", "prune", "--older-than", OLDER_THAN, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    t1 = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"ua-vp db prune exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return t0, t1, json.loads(done.stdout)


def _wait_file(path: Path, claimers: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not claimers.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the claimers did not start")
        time.sleep(0.05)


def _latency(variant: str, ms: list[float], notes: str) -> list[Figure]:
    notes += f"; n={len(ms)}, mean {statistics.fmean(ms):.2f} ms" if ms else "; n=0"
    out = [Figure("prune", f"{variant} p{p}", percentile(ms, p), "ms", notes, kind="latency") for p in (50, 99)]
    out.append(Figure("prune", f"{variant} max", max(ms, default=float("nan")), "ms", notes, kind="latency"))
    return out


def scenario_prune(
    opts: Options,
    rows: int = ROWS,
    *,
    baseline_seconds: float = 20.0,
    queued: int | None = None,
    events_per_mission: int = EVENTS_PER_MISSION,
) -> list[Figure]:
    # Enough for the claimers never to run dry: a claim on an empty queue is cheaper and
    # would flatter the figure. A trial on the shared 2-core machine: 800 claims/s while
    # the prune deleted 3,000 missions/s, so rows/2 leaves a margin of about 2.
    queued = queued or max(100_000, rows // 2)
    with scratch_database(opts, "prune") as url:
        migrate(url)
        load_seconds = load(url, rows, events_per_mission, queued)
        print(f"   loaded {rows:,} finished + {queued:,} queued missions in {load_seconds:.0f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=opts.work_dir) as tmp:
            args = {
                "url": url,
                "stop_file": str(Path(tmp) / "stop"),
                "started_file": str(Path(tmp) / "started"),
            }
            got: dict[str, Any] = {}

            def claim() -> None:
                try:
                    got["results"] = run_claimers(prune_claimer, CLAIMERS, args, timeout=4 * 3600)
                except BaseException as exc:  # handed to the main thread below
                    got["error"] = exc

            claimers = threading.Thread(target=claim, daemon=True)
            sampler = LockSampler(url)
            claimers.start()
            try:
                _wait_file(Path(args["started_file"]), claimers, 120)
                sampler.start()
                warm = time.monotonic() + WARMUP_SECONDS
                time.sleep(WARMUP_SECONDS + baseline_seconds)
                p0, p1, answer = run_prune(opts, url)
            finally:
                Path(args["stop_file"]).touch()
                claimers.join()
                sampler.done.set()
                sampler.join()
            if "error" in got:
                raise got["error"]
        with psycopg.connect(url, autocommit=True) as conn:
            left = conn.execute("SELECT count(*) FROM vp_missions WHERE mission_id LIKE 'vpm_f%'").fetchone()
    results = got["results"]

    def phase(t0: float, t1: float) -> tuple[list[float], list[float]]:
        """Claims started in [t0, t1), and the finalizes of those that got a mission."""
        claims, finals = [], []
        for r in results:
            for s, c, f in zip(r["starts"], r["claim_ms"], r["finalize_ms"], strict=True):
                if t0 <= s < t1:
                    claims.append(c)
                    if f >= 0:
                        finals.append(f)
        return claims, finals

    before, before_fin = phase(warm, p0)
    during, during_fin = phase(p0, p1)
    empty = sum(r["empty"] for r in results)
    seconds = p1 - p0
    over = sum(1 for ms in during if ms > LIMIT_MS)
    over_before = sum(1 for ms in before if ms > LIMIT_MS)
    lock_n, lock_hits, lock_most, lock_what = sampler.between(p0, p1)
    lock_bn, lock_bhits, _, _ = sampler.between(warm, p0)
    shape = f"{CLAIMERS} claimers, MissionStore.claim(limit=1) + finalize, 1 connection each"
    figures = [
        *_latency("claim before prune", before, f"{shape}; {p0 - warm:.0f} s before the prune"),
        *_latency(
            "claim during prune",
            during,
            f"{shape}; claims started while `ua-vp db prune --older-than {OLDER_THAN}` ran",
        ),
        Figure(
            "prune",
            f"claims over {LIMIT_MS:g} ms during prune",
            over,
            "claims",
            f"of {len(during):,}; before the prune {over_before:,} of {len(before):,}",
            kind="count",
        ),
        Figure(
            "prune",
            "finalize during prune max",
            max(during_fin, default=float("nan")),
            "ms",
            f"p99 {percentile(during_fin, 99):.1f} ms; before the prune max {max(before_fin, default=0):.1f} ms,"
            f" p99 {percentile(before_fin, 99):.1f} ms",
            kind="count",
        ),
        Figure(
            "prune",
            "prune duration",
            seconds,
            "s",
            f"{answer['missions']:,} missions and {answer['events']:,} events deleted"
            f" ({rows:,} loaded, {events_per_mission} events each, {left[0] if left else '?'} left);"
            f" process start to exit; load took {load_seconds:.0f} s",
            kind="count",
        ),
        Figure(
            "prune",
            "prune rate",
            answer["missions"] / seconds if seconds > 0 else 0.0,
            "missions/s",
            f"{(answer['missions'] + answer['events']) / seconds:,.0f} rows/s with events; batches of 1,000",
            kind="count",
        ),
        Figure(
            "prune",
            "lock-wait samples during prune",
            lock_hits,
            "samples",
            f"of {lock_n} (every {SAMPLE_EVERY:g} s), at most {lock_most} backend(s) at once;"
            f" before the prune {lock_bhits} of {lock_bn}{'; waits seen: ' + lock_what if lock_what else ''}",
            kind="count",
        ),
        Figure(
            "prune",
            "claims during prune",
            len(during) / seconds if seconds > 0 else 0.0,
            "claims/s",
            f"before the prune {len(before) / max(p0 - warm, 1e-9):,.0f} claims/s;"
            f" {empty} claims found the queue empty",
            kind="count",
        ),
    ]
    return figures


# -- standalone ---------------------------------------------------------------------------------
def goal(figures: list[Figure], rows: int) -> dict[str, Any] | None:
    """The issue's goal from this scenario's figures (bench/report.py reports it the same way)."""
    worst = next((f for f in figures if f.scenario == "prune" and f.variant == "claim during prune max"), None)
    if worst is None:
        return None
    return {
        "goal": f"db prune of {rows:,} finished missions, {CLAIMERS} claimers: no claim > {LIMIT_MS:g} ms",
        "compared": "prune claim during prune max (ms)",
        "measured": round(worst.value, 3),
        "target": f"<= {LIMIT_MS:g}",
        "met": worst.value <= LIMIT_MS,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("UA_VP_BENCH_DATABASE_URL"))
    p.add_argument("--rows", type=int, default=ROWS, help=f"finished missions to prune (default {ROWS:,})")
    p.add_argument("--baseline-seconds", type=float, default=20.0, help="claims timed before the prune starts")
    p.add_argument("--queued", type=int, default=None, help="queued missions (default max(100k, rows/2))")
    p.add_argument("--events-per-mission", type=int, default=EVENTS_PER_MISSION)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if not args.database_url:
        p.error("no server: pass --database-url or set UA_VP_BENCH_DATABASE_URL")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ua-vp-bench-prune-") as tmp:
        opts = Options(args.database_url, quick=False, full=False, seconds=0.0, work_dir=Path(tmp))
        figures = scenario_prune(
            opts,
            args.rows,
            baseline_seconds=args.baseline_seconds,
            queued=args.queued,
            events_per_mission=args.events_per_mission,
        )
    load_avg = f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end (1-minute)"
    print("| variant | figure | unit | notes |\n|---|---|---|---|")
    for f in figures:
        print(f"| {f.variant} | {f.value:,.2f} | {f.unit} | {f.notes} |")
    g = goal(figures, args.rows)
    if g:
        print(f"\n{'met' if g['met'] else 'MISSED'} {g['goal']}: {g['measured']} ms ({g['target']})")
    print(f"load average {load_avg}")
    if args.json:
        data = {"rows": args.rows, "load_average": load_avg, "figures": [f.__dict__ for f in figures], "goal": g}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
