"""Read-only mission metrics as typed data; the API (and the CLI) shape them into
JSON, Prometheus or whatever else (``ua_vp.api.metrics_view``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from ua_vp.missions import Event, Mission, MissionEvent, Status
from ua_vp.store.rows import aware, utcnow
from ua_vp.store.store import MissionStore
from ua_vp.store.tables import events, missions

# Latencies come from the newest finished missions only: cheap, and what an
# operator wants to see is now, not the lifetime average.
LATENCY_WINDOW = 1000


@dataclass(frozen=True)
class Percentiles:
    """Seconds, over the newest :data:`LATENCY_WINDOW` finished missions."""

    count: int
    p50: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        if not values:
            return cls(0, None, None, None)
        ordered = sorted(values)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

        return cls(len(ordered), pick(0.50), pick(0.95), round(ordered[-1], 4))


@dataclass(frozen=True)
class VpMetrics:
    vp_id: str | None
    """None: every vp_id."""
    generated_at: datetime
    by_status: dict[Status, int]
    oldest_queued_age_seconds: float | None
    queue_wait: Percentiles
    run_time: Percentiles
    events_by_type: dict[str, int]
    retried: int
    lease_expired: int
    sessions_by_status: dict[str, int]
    active_missions: int
    """Missions the live (not stopped, not lost) sessions are running."""
    recent_missions: list[Mission]
    recent_events: list[MissionEvent]

    @property
    def total_missions(self) -> int:
        return sum(self.by_status.values())

    @property
    def queue_depth(self) -> int:
        return self.by_status[Status.QUEUED]


def vp_metrics(store: MissionStore, vp_id: str | None = None, *, recent: int = 10) -> VpMetrics:
    def scoped(query: Any, table: Any = missions) -> Any:
        return query.where(table.c.vp_id == vp_id) if vp_id else query

    with store.engine.connect() as conn:
        counts = dict(conn.execute(scoped(select(missions.c.status, func.count()).group_by(missions.c.status))).all())
        oldest = conn.execute(
            scoped(select(func.min(missions.c.created_at)).where(missions.c.status == Status.QUEUED.value))
        ).scalar()
        finished = conn.execute(
            scoped(
                select(missions.c.created_at, missions.c.started_at, missions.c.finished_at)
                .where(missions.c.finished_at.is_not(None), missions.c.started_at.is_not(None))
                .order_by(missions.c.finished_at.desc())
                .limit(LATENCY_WINDOW)
            )
        ).all()
        event_counts = dict(
            conn.execute(scoped(select(events.c.event_type, func.count()).group_by(events.c.event_type), events)).all()
        )
        lease_expired = conn.execute(
            scoped(
                select(func.count()).where(
                    missions.c.status == Status.FAILED.value, missions.c.error["code"].as_string() == "lease_expired"
                )
            )
        ).scalar_one()
        now = aware(conn.execute(select(store.now())).scalar_one()) or utcnow()
    spans = [(aware(c), aware(s), aware(f)) for c, s, f in finished]
    sessions = store.list_sessions(vp_id=vp_id)
    health: dict[str, int] = {}
    for s in sessions:
        health[s.status] = health.get(s.status, 0) + 1
    oldest_at = aware(oldest)
    return VpMetrics(
        vp_id=vp_id,
        generated_at=now,
        by_status={s: int(counts.get(s.value, 0)) for s in Status},
        oldest_queued_age_seconds=round((now - oldest_at).total_seconds(), 3) if oldest_at else None,
        queue_wait=Percentiles.of([(s - c).total_seconds() for c, s, _ in spans if c and s]),
        run_time=Percentiles.of([(f - s).total_seconds() for _, s, f in spans if s and f]),
        events_by_type={k: int(v) for k, v in event_counts.items()},
        retried=int(event_counts.get(Event.RETRIED.value, 0)),
        lease_expired=int(lease_expired),
        sessions_by_status=health,
        active_missions=sum(s.active_missions for s in sessions if s.status not in ("stopped", "lost")),
        recent_missions=store.list_missions(vp_id=vp_id, limit=recent),
        recent_events=store.recent_events(vp_id=vp_id, limit=2 * recent),
    )
