"""What every scenario shares: the run's options, scratch databases, parallel claimers, figures."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import statistics
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
NOOP_VP = "vp.bench.noop"


@dataclass(frozen=True)
class Options:
    """One run of the suite: where the server is and how long to spend."""

    admin_url: str
    """A libpq URL of the server's maintenance database; scenarios create their own databases."""
    quick: bool
    full: bool
    seconds: float
    """How long each throughput variant runs (it also stops when its queue is empty)."""
    work_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def pick(self, quick: Any, normal: Any, full: Any = None) -> Any:
        if self.full and full is not None:
            return full
        return quick if self.quick else normal


@dataclass
class Figure:
    """One row of the results table."""

    scenario: str
    variant: str
    value: float
    unit: str
    notes: str = ""
    kind: str = "rate"
    """``rate`` (more is better, compared with pgbench -c 8 tps), ``latency`` (ms, compared with
    pgbench -c 1 mean latency) or ``count`` (not compared)."""
    raw_variant: str | None = None
    """The ``raw`` variant this figure is the queue-shaped equivalent of (for ratio_to_raw)."""
    ratio_to_pgbench: float | None = None
    ratio_to_raw: float | None = None


# -- databases ------------------------------------------------------------------------
def libpq_url(url: str) -> str:
    """SQLAlchemy's ``postgresql+psycopg://`` spelling back to plain libpq."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sqlalchemy_url(url: str) -> str:
    return libpq_url(url).replace("postgresql://", "postgresql+psycopg://", 1)


def database_url(admin_url: str, name: str) -> str:
    head, _, _ = libpq_url(admin_url).rpartition("/")
    return f"{head}/{name}"


@contextmanager
def scratch_database(opts: Options, label: str) -> Iterator[str]:
    """A new, empty database for one scenario, dropped afterwards; yields its libpq URL."""
    name = f"uavp_bench_{label}_{opts.run_id}"
    with psycopg.connect(opts.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(opts.admin_url, name)
    finally:
        with psycopg.connect(opts.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[call-overload]


def scalar(url: str, query: str, params: Sequence[Any] = ()) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[call-overload]
        return row[0] if row else None


# -- parallel claimers ----------------------------------------------------------------
# A claimer is a plain function ``fn(index, ready, args) -> dict``: it sets itself up
# (connections, imports), calls ``ready()`` (a barrier, so all claimers start at once),
# works, and returns at least ``{"count": n, "t0": start, "t1": end}`` in
# ``time.monotonic()`` seconds, which all processes on one machine share.
Claimer = Callable[[int, Callable[[], None], dict[str, Any]], dict[str, Any]]


def _child(fn: Claimer, index: int, barrier: Any, out: Any, args: dict[str, Any]) -> None:
    try:
        out.put((index, fn(index, barrier.wait, args)))
    except BaseException:
        barrier.abort()
        out.put((index, {"error": traceback.format_exc()}))


def run_claimers(fn: Claimer, n: int, args: dict[str, Any], *, timeout: float = 300.0) -> list[dict[str, Any]]:
    """Run ``fn`` in ``n`` processes (spawned: no connection is inherited) and collect their results."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(fn, i, barrier, out, args), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    results: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(results) < n:
            try:
                index, result = out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{n - len(results)} of {n} claimers did not finish in {timeout:.0f} s") from None
            results[index] = result
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results.values() if "error" in r]
    if errors:
        raise RuntimeError("a claimer failed:\n" + errors[0])
    return [results[i] for i in range(n)]


def throughput(results: list[dict[str, Any]]) -> tuple[float, int, float]:
    """(items per second, items, seconds) from the first claimer's start to the last one's end."""
    count = sum(r["count"] for r in results)
    seconds = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    return (count / seconds if seconds > 0 else 0.0), count, seconds


def until(seconds: float) -> Callable[[], bool]:
    """A clock for a claimer's loop: true while there is time left."""
    stop = time.monotonic() + seconds
    return lambda: time.monotonic() < stop


# -- numbers --------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile, p in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_figures(scenario: str, variant: str, ms: Sequence[float], notes: str) -> list[Figure]:
    extra = f"n={len(ms)}, mean {statistics.fmean(ms):.2f} ms" if ms else "n=0"
    return [
        Figure(scenario, f"{variant} p{p}", percentile(ms, p), "ms", f"{notes}; {extra}", kind="latency")
        for p in (50, 95, 99)
    ]
