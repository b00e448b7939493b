"""Real ``ua-vp worker --profile vp.bench.noop`` processes: end-to-end throughput and
enqueue-to-started latency. Needs the ``ua-vp-bench-noop`` plugin (``bench/noop_profile``).

Times come from the database (``created_at``, ``started_at``, ``finished_at`` are all
``now()`` of their transactions), so process start-up is never counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from common import NOOP_VP, Figure, Options, latency_figures, scratch_database
from ua_store import bulk_missions_sql, migrate, open_one, reset

CONCURRENCY = 8
NOTIFY = f"SELECT pg_notify('ua_vp_missions', 'queued:{NOOP_VP}:bulk')"


def _worker_env(opts: Options, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(
        UA_VP_DATABASE_URL=url,
        UA_VP_ENABLED_IDS=NOOP_VP,
        UA_VP_MAX_CONCURRENT_MISSIONS=str(CONCURRENCY),
        UA_VP_STATE_DIR=str(opts.work_dir / "state"),
        UA_VP_LOG_FORMAT="json",
    )
    return env


@contextmanager
def running_workers(opts: Options, url: str, n: int, label: str) -> Iterator[None]:
    """``n`` worker processes, registered and idle, stopped (SIGTERM, drained) on exit."""
    ua_vp = Path(sys.executable).with_name("ua-vp")
    logs = opts.work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for i in range(n):
            log = open(logs / f"{label}-worker{i}.log", "w")  # noqa: SIM115 - closed with the process below
            procs.append(
                (
                    subprocess.Popen(
                        [str(ua_vp), "worker", "--profile", NOOP_VP],
                        env=_worker_env(opts, url),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
        _wait_for(url, "SELECT count(*) FROM vp_sessions WHERE status = 'idle'", n, 60, procs)
        yield
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, log in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _wait_for(url: str, query: str, target: int, timeout: float, procs: list | None = None) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            if row and row[0] >= target:
                return
            dead = [p.args for p, _ in procs or [] if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker exited early: {dead[0]} (see the logs under the work dir)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {query!r} to reach {target}, got {row}")
            time.sleep(0.05)


TERMINAL = "SELECT count(*) FROM vp_missions WHERE status IN ('completed', 'failed', 'cancelled')"


def scenario_e2e(opts: Options) -> list[Figure]:
    missions = opts.pick(1500, 5000)
    figures = []
    with scratch_database(opts, "e2e") as url:
        migrate(url)
        for n in (1, 2, 4):
            reset(url)
            with running_workers(opts, url, n, f"e2e{n}"):
                # One transaction: every worker is woken by the same NOTIFY, at COMMIT.
                with psycopg.connect(url) as conn:
                    conn.execute(bulk_missions_sql(missions))  # type: ignore[arg-type]
                    conn.execute(NOTIFY)  # type: ignore[arg-type]
                _wait_for(url, TERMINAL, missions, 600)
            completed, seconds = _first_start_last_finish(url)
            figures.append(
                Figure(
                    "e2e",
                    f"{n} worker(s) x{CONCURRENCY}",
                    completed / seconds if seconds else 0.0,
                    "missions/s",
                    f"{completed} no-op missions, first started_at to last finished_at {seconds:.2f} s; "
                    f"UA_VP_MAX_CONCURRENT_MISSIONS={CONCURRENCY}",
                    raw_variant=None,
                )
            )
    return figures


def _first_start_last_finish(url: str) -> tuple[int, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), "
            "extract(epoch FROM max(finished_at) - min(started_at)) FROM vp_missions"
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0.0)


def scenario_latency(opts: Options) -> list[Figure]:
    from ua_vp.missions import MissionSpec

    count, gap = opts.pick(100, 300), 0.05
    with scratch_database(opts, "latency") as url:
        migrate(url)
        store = open_one(url)
        spec = MissionSpec.create(vp_id=NOOP_VP, objective="noop")
        with running_workers(opts, url, 1, "latency"):
            for _ in range(count):
                store.enqueue(spec)
                time.sleep(gap)
            _wait_for(url, TERMINAL, count, 60)
        store.engine.dispose()
        with psycopg.connect(url, autocommit=True) as conn:
            ms = [
                float(r[0])
                for r in conn.execute(
                    "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM vp_missions "
                    "WHERE started_at IS NOT NULL"
                )
            ]
    return latency_figures(
        "latency",
        "enqueue->started LISTEN",
        ms,
        f"1 worker, 1 mission every {gap * 1000:.0f} ms, started_at - created_at (database clock)",
    )
