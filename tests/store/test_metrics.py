"""Metrics are typed data from the store; the API shapes them."""

from __future__ import annotations

from ua_vp.api.metrics_view import metrics_json
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore
from ua_vp.store.metrics import Percentiles, vp_metrics

VP = "vp.general.primary"


def test_metrics_count_by_status_and_time_what_finished(store: MissionStore) -> None:
    for objective in ("a", "b", "c"):
        store.enqueue(MissionSpec.create(vp_id=VP, objective=objective))
    store.enqueue(MissionSpec.create(vp_id="vp.coder.primary", objective="elsewhere"))
    (m,) = store.claim(VP, "w1")
    store.finalize(m.mission_id, m.lease_token or "", Status.COMPLETED, result={})
    store.register_session(worker_id="w1", vp_id=VP, capacity=2, lane="external")
    store.touch_session("w1", status="busy", active_missions=1)

    got = vp_metrics(store, VP)

    assert got.by_status == {
        Status.QUEUED: 2,
        Status.RUNNING: 0,
        Status.COMPLETED: 1,
        Status.FAILED: 0,
        Status.CANCELLED: 0,
    }
    assert (got.total_missions, got.queue_depth, got.active_missions) == (3, 2, 1)
    assert got.queue_wait.count == 1 and got.run_time.count == 1
    assert got.oldest_queued_age_seconds is not None and got.oldest_queued_age_seconds >= 0
    assert got.events_by_type == {"vp.mission.dispatched": 3, "vp.mission.started": 1, "vp.mission.completed": 1}
    assert got.sessions_by_status == {"busy": 1}
    shaped = metrics_json(got)
    assert shaped["missions"] == {"total": 3, "by_status": {s.value: n for s, n in got.by_status.items()}}
    assert shaped["queue"]["depth"] == 2 and shaped["recovery"] == {"retried": 0, "lease_expired": 0}


def test_percentiles_of_nothing_are_none() -> None:
    assert Percentiles.of([]) == Percentiles(0, None, None, None)
    assert Percentiles.of([1.0, 2.0, 3.0, 4.0]) == Percentiles(4, 3.0, 4.0, 4.0)
