"""The JSON shape of :class:`ua_vp.store.metrics.VpMetrics` (the ops API's metrics
routes and ``ua-vp metrics``): unchanged from the seed's."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ua_vp.store.metrics import VpMetrics


def metrics_json(m: VpMetrics) -> dict[str, Any]:
    by_status = {s.value: n for s, n in m.by_status.items()}
    return {
        "vp_id": m.vp_id,
        "generated_at": m.generated_at.isoformat(),
        "missions": {"total": m.total_missions, "by_status": by_status},
        "queue": {"depth": m.queue_depth, "oldest_queued_age_seconds": m.oldest_queued_age_seconds},
        "latency_seconds": {"queue_wait": asdict(m.queue_wait), "run_time": asdict(m.run_time)},
        "events": {"total": sum(m.events_by_type.values()), "by_type": dict(m.events_by_type)},
        "recovery": {"retried": m.retried, "lease_expired": m.lease_expired},
        "sessions": {
            "total": sum(m.sessions_by_status.values()),
            "by_status": dict(m.sessions_by_status),
            "active_missions": m.active_missions,
        },
        "recent_missions": [x.to_public() for x in m.recent_missions],
        "recent_events": [e.to_public() for e in m.recent_events],
    }
