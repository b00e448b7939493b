"""Read-only figures for the dashboard and Prometheus, computed by the database.

Each function is a few aggregate queries whose answer is small (rows per vp_id,
per status or per minute), so a scrape or a chart costs the same at 100k missions
as at 100: no mission rows travel to Python. Everything here is plain data;
the API shapes it (JSON for the dashboard, metric families for Prometheus).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, func, literal, select
from sqlalchemy.sql import ColumnElement

from ua_vp.missions import Event, Status
from ua_vp.store.store import MissionStore, _aware, utcnow
from ua_vp.store.tables import events, missions

LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Upper bounds (seconds) shared by every latency histogram; +Inf is implied."""


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per upper bound in :data:`LATENCY_BUCKETS`, as Prometheus wants them."""

    buckets: tuple[int, ...]
    count: int
    total: float


@dataclass
class Snapshot:
    """Everything ``/metrics`` reports, keyed by vp_id."""

    missions: dict[tuple[str, str], int] = field(default_factory=dict)
    """(vp_id, status) -> missions."""
    queue_depth: dict[str, int] = field(default_factory=dict)
    oldest_queued_age: dict[str, float] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    """(vp_id, error code) -> failed missions."""
    retries: dict[tuple[str, str], int] = field(default_factory=dict)
    """(vp_id, reason) -> missions put back in the queue (``lease_expired``, ``worker_shutdown``)."""
    cancel_requests: dict[str, int] = field(default_factory=dict)
    sessions: dict[tuple[str, str], int] = field(default_factory=dict)
    """(vp_id, status incl. lost) -> worker sessions."""
    queue_wait: dict[str, Histogram] = field(default_factory=dict)
    run_time: dict[str, Histogram] = field(default_factory=dict)
    claim_latency: dict[str, Histogram] = field(default_factory=dict)


def _epoch(store: MissionStore, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a timestamp column, computed by the database."""
    if store.is_postgres:
        return cast(func.extract("epoch", column), Float)
    # SQLite keeps timestamps as UTC text; julianday reads it.
    return (func.julianday(column) - 2440587.5) * 86400.0


def _histograms(conn: Any, seconds: ColumnElement[float], source: Any, vp_id: Any, where: Any) -> dict[str, Histogram]:
    # Each duration is computed once (a materialized CTE: inlined, every bucket test would
    # recompute it) and falls in one bucket (a CASE stops at the first bound it is under);
    # the cumulative counts Prometheus wants are summed here from a few dozen rows.
    durations = (
        select(vp_id.label("vp_id"), seconds.label("s"))
        .select_from(source)
        .where(where)
        .cte()
        .prefix_with("MATERIALIZED")
    )
    d = durations.c
    slot = case(*((d.s <= bound, i) for i, bound in enumerate(LATENCY_BUCKETS)), else_=len(LATENCY_BUCKETS))
    per_slot: dict[str, list[int]] = {}
    totals: dict[str, float] = {}
    query = select(d.vp_id, slot, func.count(), func.coalesce(func.sum(d.s), 0.0)).group_by(d.vp_id, slot)
    for vp, index, n, total in conn.execute(query):
        counts = per_slot.setdefault(vp, [0] * (len(LATENCY_BUCKETS) + 1))
        counts[int(index)] += int(n)
        totals[vp] = totals.get(vp, 0.0) + float(total)
    out = {}
    for vp, counts in per_slot.items():
        cumulative = [sum(counts[: i + 1]) for i in range(len(LATENCY_BUCKETS))]
        out[vp] = Histogram(buckets=tuple(cumulative), count=sum(counts), total=totals[vp])
    return out


def snapshot(store: MissionStore) -> Snapshot:
    """One consistent-enough read of the whole fleet (each query sees its own instant)."""
    snap = Snapshot()
    m = missions.c
    with store.engine.connect() as conn:
        now = _aware(conn.execute(select(store._now())).scalar_one()) or utcnow()
        for vp_id, status, n in conn.execute(select(m.vp_id, m.status, func.count()).group_by(m.vp_id, m.status)):
            snap.missions[(vp_id, status)] = int(n)
        queued = select(m.vp_id, func.count(), func.min(m.created_at)).where(m.status == Status.QUEUED.value)
        for vp_id, n, oldest in conn.execute(queued.group_by(m.vp_id)):
            snap.queue_depth[vp_id] = int(n)
            snap.oldest_queued_age[vp_id] = max(0.0, (now - _aware(oldest)).total_seconds())  # type: ignore[operator]
        code = func.coalesce(m.error["code"].as_string(), "unknown")
        failed = select(m.vp_id, code, func.count()).where(m.status == Status.FAILED.value)
        for vp_id, error_code, n in conn.execute(failed.group_by(m.vp_id, code)):
            snap.failures[(vp_id, error_code)] = int(n)
        e = events.c
        reason = func.coalesce(e.payload["reason"].as_string(), "unknown")
        retried = select(e.vp_id, reason, func.count()).where(e.event_type == Event.RETRIED.value)
        for vp_id, why, n in conn.execute(retried.group_by(e.vp_id, reason)):
            snap.retries[(vp_id, why)] = int(n)
        asked = select(e.vp_id, func.count()).where(e.event_type == Event.CANCEL_REQUESTED.value)
        for vp_id, n in conn.execute(asked.group_by(e.vp_id)):
            snap.cancel_requests[vp_id] = int(n)

        started = _epoch(store, m.started_at)
        snap.queue_wait = _histograms(
            conn, started - _epoch(store, m.created_at), missions, m.vp_id, m.started_at.is_not(None)
        )
        snap.run_time = _histograms(
            conn,
            _epoch(store, m.finished_at) - started,
            missions,
            m.vp_id,
            and_(m.started_at.is_not(None), m.finished_at.is_not(None)),
        )
        snap.claim_latency = _claim_latency(store, conn)
    for s in store.list_sessions():
        snap.sessions[(s.vp_id, s.status)] = snap.sessions.get((s.vp_id, s.status), 0) + 1
    return snap


def _claim_latency(store: MissionStore, conn: Any) -> dict[str, Histogram]:
    """Per claim: from the mission becoming claimable (dispatched, or put back by a
    retry) to the ``started`` event of that attempt. Unlike queue wait (created ->
    last start), a retried mission counts once per claim.

    A mission claimed once (``attempt = 1``, nearly all of them) took ``started_at -
    created_at``, read from its row; only missions claimed again are followed through
    their events, so the window function never walks the whole events table."""
    m = missions.c
    once = _histograms(
        conn,
        _epoch(store, m.started_at) - _epoch(store, m.created_at),
        missions,
        m.vp_id,
        and_(m.attempt == 1, m.started_at.is_not(None)),
    )
    e = events.c
    kinds = (Event.DISPATCHED.value, Event.RETRIED.value, Event.STARTED.value)
    at = _epoch(store, e.created_at)
    ordered = (
        select(
            e.vp_id,
            e.event_type,
            at.label("at"),
            func.lag(at).over(partition_by=e.mission_id, order_by=e.id).label("before"),
        )
        .where(e.event_type.in_(kinds), e.mission_id.in_(select(m.mission_id).where(m.attempt > 1)))
        .subquery()
    )
    o = ordered.c
    again = _histograms(
        conn, o.at - o.before, ordered, o.vp_id, and_(o.event_type == Event.STARTED.value, o.before.is_not(None))
    )
    for vp, h in again.items():
        base = once.get(vp)
        once[vp] = (
            h
            if base is None
            else Histogram(
                buckets=tuple(a + b for a, b in zip(base.buckets, h.buckets, strict=True)),
                count=base.count + h.count,
                total=base.total + h.total,
            )
        )
    return once


# -- the dashboard's chart -------------------------------------------------------------


@dataclass(frozen=True)
class Minute:
    start: datetime
    finished: int
    """Missions that reached a terminal status in this minute (throughput)."""
    queue_depth: int
    """Queued missions at the end of this minute."""


def timeline(store: MissionStore, *, minutes: int = 60, vp_id: str | None = None) -> list[Minute]:
    """Throughput and queue depth per minute over the last ``minutes``, oldest first.

    Depth is walked back from now: at the end of each earlier minute it was the
    current depth minus what was queued since plus what left the queue since
    (started, or cancelled before starting). A mission put back by a retry and
    started again is counted at its last start only, so a minute with many
    retries can read a little low.
    """
    m = missions.c
    with store.engine.connect() as conn:
        now = _aware(conn.execute(select(store._now())).scalar_one()) or utcnow()
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        since = end - timedelta(minutes=minutes)
        scope = (m.vp_id == vp_id) if vp_id else literal(True)
        depth_now = conn.execute(select(func.count()).where(m.status == Status.QUEUED.value, scope)).scalar_one()

        def per_minute(column: Any, *where: Any) -> dict[int, int]:
            offset = (_epoch(store, column) - since.timestamp()) / 60.0
            # Whole minutes since `since` (never negative here): PostgreSQL's cast rounds.
            slot = func.floor(offset) if store.is_postgres else cast(offset, Integer)
            query = select(slot, func.count()).where(column >= since, scope, *where).group_by(slot)
            return {int(k): int(n) for k, n in conn.execute(query) if k is not None}

        finished = per_minute(m.finished_at)
        entered = per_minute(m.created_at)
        left = per_minute(m.started_at)
        left_unstarted = per_minute(m.finished_at, m.started_at.is_(None))
    out: list[Minute] = []
    depth = int(depth_now)
    for slot in range(minutes - 1, -1, -1):
        out.append(Minute(start=since + timedelta(minutes=slot), finished=finished.get(slot, 0), queue_depth=depth))
        # Depth at the end of the previous minute: undo this minute's arrivals and departures.
        depth = max(0, depth - entered.get(slot, 0) + left.get(slot, 0) + left_unstarted.get(slot, 0))
    out.reverse()
    return out
