"""``GET /metrics``: the fleet as Prometheus sees it.

Every mission, queue, latency and session figure is read from the database at
scrape time (``ua_vp.store.observe.snapshot``), so any server in front of one
database reports the same truth and a restart loses nothing. Only the
``process_*`` series describe the serving process itself. Workers expose no
endpoint of their own: what they do is in the database, and a worker's health
shows as its session (``ua_vp_sessions{status="lost"}``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cache

from litestar import Controller, Response, get
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ua_vp import __version__
from ua_vp.api.deps import Api, ApiState, error_docs
from ua_vp.missions import Status
from ua_vp.store.observe import LATENCY_BUCKETS, Histogram, snapshot

TEXT_FORMAT = "text/plain; version=0.0.4"
"""The text format every Prometheus reads (Litestar adds the charset)."""

SESSION_STATES = ("idle", "busy", "draining", "stopped", "lost")


@cache
def _sandbox_backend(setting: str) -> str:
    from ua_vp import sandbox
    from ua_vp.errors import ConfigError

    try:
        backend, _ = sandbox.resolve(setting)
    except ConfigError:
        return f"{setting} (unavailable)"
    return str(backend)


class FleetCollector(Collector):
    """Turns one database snapshot into metric families on each scrape."""

    def __init__(self, api: ApiState) -> None:
        self.api = api

    def collect(self) -> Iterator[Metric]:
        began = time.perf_counter()
        snap = snapshot(self.api.store)
        # Enabled profiles always have their series, at zero before their first mission.
        vp_ids = sorted(
            set(self.api.registry.enabled) | {vp for vp, _ in snap.missions} | {vp for vp, _ in snap.sessions}
        )

        info = InfoMetricFamily("ua_vp", "ua-vp build and set-up")
        info.add_metric(
            [],
            {
                "version": __version__,
                "sandbox": _sandbox_backend(self.api.settings.sandbox),
                "database": self.api.store.engine.dialect.name,
                "dispatch": "external" if self.api.settings.external_dispatch else "in_process",
            },
        )
        yield info

        by_status = GaugeMetricFamily("ua_vp_missions", "Missions by vp_id and status", labels=["vp_id", "status"])
        for vp_id in vp_ids:
            for status in Status:
                by_status.add_metric([vp_id, status.value], snap.missions.get((vp_id, status.value), 0))
        yield by_status

        depth = GaugeMetricFamily("ua_vp_queue_depth", "Queued missions", labels=["vp_id"])
        age = GaugeMetricFamily(
            "ua_vp_oldest_queued_age_seconds", "Age of the oldest queued mission (0 when none)", labels=["vp_id"]
        )
        for vp_id in vp_ids:
            depth.add_metric([vp_id], snap.queue_depth.get(vp_id, 0))
            age.add_metric([vp_id], round(snap.oldest_queued_age.get(vp_id, 0.0), 3))
        yield depth
        yield age

        for name, doc, data in (
            ("ua_vp_queue_wait_seconds", "Created to (last) start, per started mission", snap.queue_wait),
            ("ua_vp_run_time_seconds", "Start to finish, per finished mission", snap.run_time),
            ("ua_vp_claim_latency_seconds", "Claimable to started, per claim", snap.claim_latency),
        ):
            yield _histogram(name, doc, data, vp_ids)

        retries = CounterMetricFamily(
            "ua_vp_mission_retries", "Missions put back in the queue, by reason", labels=["vp_id", "reason"]
        )
        for vp_id in vp_ids:
            retries.add_metric([vp_id, "lease_expired"], snap.retries.get((vp_id, "lease_expired"), 0))
        for (vp_id, reason), n in sorted(snap.retries.items()):
            if reason != "lease_expired":
                retries.add_metric([vp_id, reason], n)
        yield retries

        cancels = CounterMetricFamily("ua_vp_mission_cancel_requests", "Cancels asked for", labels=["vp_id"])
        for vp_id in vp_ids:
            cancels.add_metric([vp_id], snap.cancel_requests.get(vp_id, 0))
        yield cancels

        failures = CounterMetricFamily(
            "ua_vp_mission_failures", "Failed missions by error code", labels=["vp_id", "code"]
        )
        for (vp_id, code), n in sorted(snap.failures.items()):
            failures.add_metric([vp_id, code], n)
        yield failures

        sessions = GaugeMetricFamily(
            "ua_vp_sessions", "Worker sessions by status (lost: silent past a lease)", labels=["vp_id", "status"]
        )
        for vp_id in vp_ids:
            for state in SESSION_STATES:
                sessions.add_metric([vp_id, state], snap.sessions.get((vp_id, state), 0))
        yield sessions

        took = GaugeMetricFamily("ua_vp_scrape_duration_seconds", "Time this scrape spent reading the database")
        took.add_metric([], round(time.perf_counter() - began, 6))
        yield took


def _histogram(name: str, doc: str, data: dict[str, Histogram], vp_ids: list[str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["vp_id"])
    for vp_id in vp_ids:
        h = data.get(vp_id) or Histogram(buckets=(0,) * len(LATENCY_BUCKETS), count=0, total=0.0)
        buckets = [(_bound(b), n) for b, n in zip(LATENCY_BUCKETS, h.buckets, strict=True)]
        buckets.append(("+Inf", h.count))
        family.add_metric([vp_id], buckets, round(h.total, 6))
    return family


def _bound(value: float) -> str:
    return repr(float(value))


def build_registry(api: ApiState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(api))
    ProcessCollector(registry=registry)
    return registry


class PrometheusController(Controller):
    path = "/metrics"
    tags = ["metrics"]

    @get(
        "/",
        operation_id="prometheusMetrics",
        summary="Prometheus exposition: missions, queues, latencies, sessions (read from the database)",
        sync_to_thread=True,
        media_type=TEXT_FORMAT,
        responses=error_docs([401]),
    )
    def scrape(self, api: Api) -> Response[bytes]:
        # A registry per scrape costs microseconds and keeps no state between scrapes.
        return Response(generate_latest(build_registry(api)), media_type=TEXT_FORMAT)
