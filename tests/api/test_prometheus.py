"""``/metrics`` read with prometheus-client's own parser: its numbers are the JSON
metrics' numbers, on SQLite and PostgreSQL, in-process and over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import DISPATCH, SEED_BODY, Served
from ua_vp import __version__
from ua_vp.api import create_app
from ua_vp.config import Settings
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore

GENERAL = "vp.general.primary"
CODER = "vp.coder.primary"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def make_fleet(short: MissionStore, store: MissionStore) -> None:
    """Missions in every state, a lease-expired retry, a failure by code, a live and a lost session."""
    spec = lambda vp, i: MissionSpec.create(vp_id=vp, objective=f"m{i}", max_attempts=2)  # noqa: E731
    ids = [store.enqueue(spec(GENERAL, i)).mission.mission_id for i in range(6)]
    store.enqueue(spec(CODER, 9))
    store.request_cancel(ids[0])
    claimed = short.claim(GENERAL, "w-gone", limit=3)
    by_id = {m.mission_id: m for m in claimed}
    first, second, third = (m.mission_id for m in claimed)
    store.finalize(first, by_id[first].lease_token or "", Status.COMPLETED, result={"summary": "ok"})
    store.finalize(second, by_id[second].lease_token or "", Status.FAILED, error={"code": "tool_error", "message": "x"})
    time.sleep(0.3)
    assert [m.mission_id for m in short.reap()] == [third]  # back in the queue, attempt 1 of 2
    again = short.claim(GENERAL, "w-gone", limit=1)
    assert [m.mission_id for m in again] != []
    time.sleep(0.3)
    short.reap()  # the claimed one: retried or failed with lease_expired
    short.register_session(worker_id="w-lost", vp_id=GENERAL, capacity=1, lane="external")
    time.sleep(0.3)
    store.register_session(worker_id="w-live", vp_id=GENERAL, capacity=4, lane="external", sandbox="none")


def check_agreement(samples: Samples, metrics: dict[str, Any], vp_id: str) -> None:
    """The Prometheus figures for ``vp_id`` against ``/api/v1/ops/metrics/vp?vp_id=``."""
    for status, count in metrics["missions"]["by_status"].items():
        assert value(samples, "ua_vp_missions", vp_id=vp_id, status=status) == count, status
    assert value(samples, "ua_vp_queue_depth", vp_id=vp_id) == metrics["queue"]["depth"]
    age = metrics["queue"]["oldest_queued_age_seconds"] or 0.0
    # Read a moment apart: the same queue, a slightly older mission.
    assert abs(value(samples, "ua_vp_oldest_queued_age_seconds", vp_id=vp_id) - age) < 2.0
    retried = sum(
        v for (n, labels), v in samples.items() if n == "ua_vp_mission_retries_total" and ("vp_id", vp_id) in labels
    )
    assert retried == metrics["recovery"]["retried"]
    lease_expired = samples.get(
        ("ua_vp_mission_failures_total", frozenset({"vp_id": vp_id, "code": "lease_expired"}.items())), 0
    )
    assert lease_expired == metrics["recovery"]["lease_expired"]
    # Read a moment apart, a silent session may turn lost between the two: compare the
    # sessions counted, not the status each read gave them.
    statuses = ("idle", "busy", "draining", "stopped", "lost")
    assert sum(value(samples, "ua_vp_sessions", vp_id=vp_id, status=s) for s in statuses) == sum(
        metrics["sessions"]["by_status"].get(s, 0) for s in statuses
    )
    run = metrics["latency_seconds"]["run_time"]
    assert value(samples, "ua_vp_run_time_seconds_count", vp_id=vp_id) == run["count"]
    for name in ("ua_vp_queue_wait_seconds", "ua_vp_run_time_seconds", "ua_vp_claim_latency_seconds"):
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for (n, labels), v in samples.items()
            if n == f"{name}_bucket" and ("vp_id", vp_id) in labels
        )
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{name} buckets are not cumulative"
        assert buckets[-1] == (float("inf"), value(samples, f"{name}_count", vp_id=vp_id))
    if run["count"]:
        # The largest run time lies in the bucket Prometheus would put it in.
        biggest = run["max"]
        below = [le for le, v in buckets_of(samples, "ua_vp_run_time_seconds", vp_id) if v == run["count"]]
        assert min(below) >= biggest - 0.001


def buckets_of(samples: Samples, name: str, vp_id: str) -> list[tuple[float, float]]:
    return sorted(
        (float(dict(labels)["le"]), v)
        for (n, labels), v in samples.items()
        if n == f"{name}_bucket" and ("vp_id", vp_id) in labels
    )


def test_metrics_agree_with_the_json_metrics(
    short_lease_store: MissionStore, store: MissionStore, settings_for: Callable[..., Settings]
) -> None:
    make_fleet(short_lease_store, store)
    # The API's store has the short lease too, so a silent session reads as lost.
    with TestClient(create_app(settings_for(), store=short_lease_store)) as client:
        r = client.get("/metrics")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = scrape(r.text)
        for vp_id in (GENERAL, CODER):
            metrics = client.get("/api/v1/ops/metrics/vp", params={"vp_id": vp_id}).json()["metrics"]
            check_agreement(samples, metrics, vp_id)
        general = client.get("/api/v1/ops/metrics/vp", params={"vp_id": GENERAL}).json()["metrics"]
    assert general["missions"]["by_status"]["completed"] == 1 and general["recovery"]["retried"] >= 1
    assert value(samples, "ua_vp_mission_failures_total", vp_id=GENERAL, code="tool_error") == 1
    assert value(samples, "ua_vp_sessions", vp_id=GENERAL, status="lost") >= 1
    assert value(samples, "ua_vp_mission_cancel_requests_total", vp_id=GENERAL) == 1
    assert value(samples, "ua_vp_claim_latency_seconds_count", vp_id=GENERAL) == 4  # 3 claims, then 1 more
    info = [labels for (n, labels) in samples if n == "ua_vp_info"]
    assert dict(info[0])["version"] == __version__ and dict(info[0])["sandbox"]
    assert any(n.startswith("process_") for n, _ in samples)  # the serving process's own


def test_metrics_need_the_token_when_one_is_set(make_client: Callable[..., TestClient[Any]]) -> None:
    client = make_client(ops_token="tok-123")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer tok-123"})
    assert ok.status_code == 200 and "ua_vp_queue_depth" in ok.text


def test_metrics_over_http_from_a_real_server(serve: Callable[..., Served], tmp_path: Path) -> None:
    served = serve()
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for _ in range(3):
            assert http.post(DISPATCH, json=SEED_BODY).status_code == 201
        samples = scrape(http.get("/metrics").text)
        json_metrics = http.get("/api/v1/ops/metrics/vp", params={"vp_id": GENERAL}).json()["metrics"]
    assert value(samples, "ua_vp_queue_depth", vp_id=GENERAL) == 3 == json_metrics["queue"]["depth"]
    assert value(samples, "ua_vp_missions", vp_id=GENERAL, status="queued") == 3
    assert value(samples, "ua_vp_scrape_duration_seconds") > 0


def test_the_contrib_grafana_dashboard_only_names_metrics_that_exist(
    make_client: Callable[..., TestClient[Any]],
) -> None:
    import json
    import re

    root = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
    exprs = [
        t["expr"] for p in json.loads((root / "grafana-dashboard.json").read_text())["panels"] for t in p["targets"]
    ]
    named = {n for e in exprs for n in re.findall(r"\b((?:ua_vp|process)_[a-z_]+)", e)}
    text = make_client().get("/metrics").text
    families = list(text_string_to_metric_families(text))
    # A family with no series yet (no failure so far) still declares its names.
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    exposed = {s.name for f in families for s in f.samples}
    exposed |= {f.name + suffix for f in families for suffix in suffixes.get(f.type, [""])}
    assert named and named <= exposed, named - exposed
    assert "metrics_path: /metrics" in (root / "prometheus.yml").read_text()
