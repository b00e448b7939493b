"""Read-only mission metrics for the ops API and ``ua-vp metrics``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ua_vp.missions import Event, Status
from ua_vp.store.store import MissionStore, _aware, utcnow
from ua_vp.store.tables import events, missions

# Latencies come from the newest finished missions only: cheap, and what an
# operator wants to see is now, not the lifetime average.
LATENCY_WINDOW = 1000


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {"count": len(ordered), "p50": pick(0.50), "p95": pick(0.95), "max": round(ordered[-1], 4)}


def vp_metrics(store: MissionStore, vp_id: str | None = None, *, recent: int = 10) -> dict[str, Any]:
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
        now = _aware(conn.execute(select(store.now())).scalar_one()) or utcnow()
    queue_wait = [(_aware(s) - _aware(c)).total_seconds() for c, s, _ in finished]  # type: ignore[operator]
    run_time = [(_aware(f) - _aware(s)).total_seconds() for _, s, f in finished]  # type: ignore[operator]
    sessions = store.list_sessions(vp_id=vp_id)
    health: dict[str, int] = {}
    for s in sessions:
        health[s.status] = health.get(s.status, 0) + 1
    by_status = {s.value: int(counts.get(s.value, 0)) for s in Status}
    return {
        "vp_id": vp_id,
        "generated_at": now.isoformat(),
        "missions": {"total": sum(by_status.values()), "by_status": by_status},
        "queue": {
            "depth": by_status[Status.QUEUED.value],
            "oldest_queued_age_seconds": round((now - _aware(oldest)).total_seconds(), 3) if oldest else None,  # type: ignore[operator]
        },
        "latency_seconds": {"queue_wait": _percentiles(queue_wait), "run_time": _percentiles(run_time)},
        "events": {"total": sum(event_counts.values()), "by_type": {k: int(v) for k, v in event_counts.items()}},
        "recovery": {
            "retried": int(event_counts.get(Event.RETRIED.value, 0)),
            "lease_expired": int(lease_expired),
        },
        "sessions": {
            "total": len(sessions),
            "by_status": health,
            "active_missions": sum(s.active_missions for s in sessions if s.status not in ("stopped", "lost")),
        },
        "recent_missions": [m.to_public() for m in store.list_missions(vp_id=vp_id, limit=recent)],
        "recent_events": [e.to_public() for e in store.recent_events(vp_id=vp_id, limit=2 * recent)],
    }
