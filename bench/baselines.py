"""The two baselines every other figure is divided by.

- ``pgbench``: the server's ceiling for simple transactions (TPC-B-like, 5 statements each).
- ``raw``: the floor any PostgreSQL queue pays: a minimal table, one claim statement
  (``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``) and
  one finish statement, each in autocommit: 2 round trips per job, no events, no ORM.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg

from common import PG_BIN, Figure, Options, execute, run_claimers, scratch_database, throughput, until

# -- pgbench ----------------------------------------------------------------------------


def _pgbench(url: str, *args: str) -> str:
    done = subprocess.run(
        [str(PG_BIN / "pgbench"), *args, url], check=True, capture_output=True, text=True, timeout=600
    )
    return done.stdout


def _tps(output: str) -> float:
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if not match:
        raise RuntimeError(f"pgbench printed no tps:\n{output}")
    return float(match.group(1))


def scenario_pgbench(opts: Options) -> list[Figure]:
    seconds = str(int(opts.pick(5, 10)))
    with scratch_database(opts, "pgbench") as url:
        _pgbench(url, "-i", "-s", "10", "-q")
        figures = []
        for clients, threads in ((8, 2), (1, 1)):
            tps = _tps(_pgbench(url, "-c", str(clients), "-j", str(threads), "-T", seconds))
            figures.append(
                Figure(
                    "pgbench",
                    f"tpcb -c {clients}",
                    tps,
                    "tps",
                    f"pgbench -s 10 -c {clients} -j {threads} -T {seconds}; 7 round trips per transaction",
                )
            )
    return figures


# -- raw ----------------------------------------------------------------------------------
RAW_SCHEMA = (
    "CREATE TABLE bench_jobs (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'queued', "
    "payload jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX bench_jobs_queued ON bench_jobs (id) WHERE status = 'queued'",
)
RAW_CLAIM = (
    "UPDATE bench_jobs SET status = 'running' WHERE id = ANY(ARRAY("
    "SELECT id FROM bench_jobs WHERE status = 'queued' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
    ")) RETURNING id, payload"
)
RAW_CLAIM_ONE = (
    "UPDATE bench_jobs SET status = 'running' WHERE id = ("
    "SELECT id FROM bench_jobs WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    ") RETURNING id, payload"
)
RAW_FINISH = "UPDATE bench_jobs SET status = 'done' WHERE id = %s"
RAW_INSERT = "INSERT INTO bench_jobs (payload) VALUES (%s)"


def raw_prefill(url: str, n: int) -> None:
    execute(
        url,
        "TRUNCATE bench_jobs",
        f"INSERT INTO bench_jobs (payload) SELECT jsonb_build_object('n', g) FROM generate_series(1, {n}) g",
        "VACUUM ANALYZE bench_jobs",
    )


def raw_claimer(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    """Claim (1 or ``batch`` rows) then finish each, until the queue is empty or time is up."""
    batch = args["batch"]
    with psycopg.connect(args["url"], autocommit=True) as conn:
        ready()
        more, count, t0 = until(args["seconds"]), 0, time.monotonic()
        while more():
            if batch == 1:
                rows = conn.execute(RAW_CLAIM_ONE).fetchall()
            else:
                rows = conn.execute(RAW_CLAIM, (batch,)).fetchall()
            if not rows:
                break
            for job_id, _payload in rows:
                conn.execute(RAW_FINISH, (job_id,))
            count += len(rows)
        return {"count": count, "t0": t0, "t1": time.monotonic()}


def raw_inserter(index: int, ready: Callable[[], None], args: dict[str, Any]) -> dict[str, Any]:
    with psycopg.connect(args["url"], autocommit=True) as conn:
        ready()
        more, count, t0 = until(args["seconds"]), 0, time.monotonic()
        while more():
            conn.execute(RAW_INSERT, ('{"objective": "noop"}',))
            count += 1
        return {"count": count, "t0": t0, "t1": time.monotonic()}


def scenario_raw(opts: Options) -> list[Figure]:
    figures = []
    prefill = int(15_000 * opts.seconds)
    with scratch_database(opts, "raw") as url:
        execute(url, *RAW_SCHEMA)
        for batch in (1, 10):
            for n in (1, 8):
                raw_prefill(url, prefill)
                rate, count, secs = throughput(
                    run_claimers(raw_claimer, n, {"url": url, "batch": batch, "seconds": opts.seconds})
                )
                figures.append(
                    Figure(
                        "raw",
                        raw_claim_variant(batch, n),
                        rate,
                        "jobs/s",
                        f"{count} jobs in {secs:.1f} s; {'1 claim' if batch == 1 else f'1 claim per {batch}'}"
                        " + 1 finish statement per job, autocommit",
                    )
                )
        execute(url, "TRUNCATE bench_jobs")
        for n in (1, 8):
            rate, count, secs = throughput(run_claimers(raw_inserter, n, {"url": url, "seconds": opts.seconds}))
            figures.append(
                Figure("raw", raw_insert_variant(n), rate, "jobs/s", f"{count} single-row INSERTs in {secs:.1f} s")
            )
    return figures


def raw_claim_variant(batch: int, claimers: int) -> str:
    return f"claim{'' if batch == 1 else batch}+finish x{claimers}"


def raw_insert_variant(claimers: int) -> str:
    return f"insert x{claimers}"
