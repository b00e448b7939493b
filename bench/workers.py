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


def _worker_env(opts: Options, url: str, concurrency: int = CONCURRENCY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_VP_")}
    env.update(
        UA_VP_DATABASE_URL=url,
        UA_VP_ENABLED_IDS=NOOP_VP,
        UA_VP_MAX_CONCURRENT_MISSIONS=str(concurrency),
        UA_VP_STATE_DIR=str(opts.work_dir / "state"),
        UA_VP_LOG_FORMAT="json",
    )
    return env


@contextmanager
def running_workers(
    opts: Options, url: str, n: int, label: str, concurrency: int = CONCURRENCY
) -> Iterator[list[subprocess.Popen[bytes]]]:
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
                        env=_worker_env(opts, url, concurrency),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
        _wait_for(url, "SELECT count(*) FROM vp_sessions WHERE status = 'idle'", n, 60, procs)
        yield [p for p, _ in procs]
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
        for n, concurrency in ((1, 1), (1, CONCURRENCY), (2, CONCURRENCY), (4, CONCURRENCY)):
            reset(url)
            with running_workers(opts, url, n, f"e2e{n}x{concurrency}", concurrency):
                # One transaction: every worker is woken by the same NOTIFY, at COMMIT.
                with psycopg.connect(url) as conn:
                    conn.execute(bulk_missions_sql(missions))  # type: ignore[arg-type]
                    conn.execute(NOTIFY)  # type: ignore[arg-type]
                _wait_for(url, TERMINAL, missions, 600)
            completed, seconds = _first_start_last_finish(url)
            figures.append(
                Figure(
                    "e2e",
                    f"{n} worker(s) x{concurrency}",
                    completed / seconds if seconds else 0.0,
                    "missions/s",
                    f"{completed} no-op missions, first started_at to last finished_at {seconds:.2f} s; "
                    f"UA_VP_MAX_CONCURRENT_MISSIONS={concurrency}",
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
    return [
        *latency_figures(
            "latency",
            "enqueue->started LISTEN",
            ms,
            f"1 worker, 1 mission every {gap * 1000:.0f} ms, started_at - created_at (database clock)",
        ),
        *latency_figures(
            "latency",
            "raw LISTEN/NOTIFY",
            _raw_listen_latency(opts, count, gap),
            f"psycopg listener claims one row per NOTIFY, 1 insert+NOTIFY every {gap * 1000:.0f} ms",
        ),
    ]


def _raw_listen_latency(opts: Options, count: int, gap: float) -> list[float]:
    """The floor: a bare psycopg LISTEN loop that claims a row on each NOTIFY."""
    import threading

    with scratch_database(opts, "rawlisten") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE raw_lat (id bigserial PRIMARY KEY, created_at timestamptz, started_at timestamptz)"
            )
        ready = threading.Event()

        def listener() -> None:
            with psycopg.connect(url, autocommit=True) as listen, psycopg.connect(url, autocommit=True) as work:
                listen.execute("LISTEN raw_lat")
                ready.set()
                for done, _ in enumerate(listen.notifies(timeout=count * gap + 30), start=1):
                    work.execute(
                        "UPDATE raw_lat SET started_at = now() WHERE id = (SELECT id FROM raw_lat"
                        " WHERE started_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    )
                    if done == count:
                        return

        thread = threading.Thread(target=listener, daemon=True)
        thread.start()
        ready.wait(10)
        with psycopg.connect(url) as conn:
            for _ in range(count):
                conn.execute("INSERT INTO raw_lat (created_at) VALUES (now())")
                conn.execute("NOTIFY raw_lat")
                conn.commit()
                time.sleep(gap)
        thread.join(30)
        with psycopg.connect(url, autocommit=True) as conn:
            return [
                float(r[0])
                for r in conn.execute(
                    "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM raw_lat"
                    " WHERE started_at IS NOT NULL"
                )
            ]


def scenario_wakeups(opts: Options) -> list[Figure]:
    """N idle workers, missions enqueued one at a time: committed transactions per
    mission (pg_stat_database.xact_commit, every statement of every process) and
    enqueue->started p50. A NOTIFY that wakes every idle worker costs about one empty
    claim per idle worker per mission."""
    from ua_vp.missions import MissionSpec

    count, gap = opts.pick(100, 200), 0.05
    figures = []
    with scratch_database(opts, "wakeups") as url:
        migrate(url)
        name = url.rsplit("/", 1)[1]
        for n in (1, 4, 16):
            reset(url)
            store = open_one(url)
            spec = MissionSpec.create(vp_id=NOOP_VP, objective="noop")
            with running_workers(opts, url, n, f"wake{n}", concurrency=1):
                time.sleep(1.0)
                before = _commits(url, name)
                for _ in range(count):
                    store.enqueue(spec)
                    time.sleep(gap)
                _wait_for(url, TERMINAL, count, 60)
                used = _commits(url, name) - before
            store.engine.dispose()
            with psycopg.connect(url, autocommit=True) as conn:
                ms = sorted(
                    float(r[0])
                    for r in conn.execute(
                        "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM vp_missions"
                        " WHERE started_at IS NOT NULL"
                    )
                )
            figures.append(
                Figure(
                    "wakeups",
                    f"{n} idle worker(s) transactions per mission",
                    used / count,
                    "tx",
                    f"{count} missions {gap * 1000:.0f} ms apart; xact_commit delta incl. the enqueue",
                    kind="count",
                )
            )
            figures.append(
                Figure(
                    "wakeups",
                    f"{n} idle worker(s) enqueue->started p50",
                    ms[len(ms) // 2] if ms else 0.0,
                    "ms",
                    "started_at - created_at (database clock)",
                    kind="latency",
                )
            )
    return figures


def _commits(url: str, name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def scenario_idle_rss(opts: Options) -> list[Figure]:
    """An idle ``ua-vp worker`` with 256 slots: resident memory after it settled."""
    with scratch_database(opts, "rss") as url:
        migrate(url)
        with running_workers(opts, url, 1, "rss", concurrency=256) as procs:
            time.sleep(3.0)
            status = Path(f"/proc/{procs[0].pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return [Figure("rss", "idle worker x256", kib / 1024, "MB", "VmRSS of one idle worker", kind="count")]
