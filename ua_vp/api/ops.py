"""Sessions and metrics: ``/api/v1/ops/vp/sessions``, ``/api/v1/ops/metrics/...`` and
the dashboard's compat route."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from ua_vp.api.deps import Api, error_docs
from ua_vp.api.schemas import (
    DashboardMetrics,
    MetricsResponse,
    ProfileList,
    ProfileView,
    SessionList,
    Timeline,
    TimelinePoint,
    session_view,
)
from ua_vp.missions import MAX_ID_CHARS, storable
from ua_vp.store.metrics import vp_metrics
from ua_vp.store.observe import timeline

CODER_VP_ID = "vp.coder.primary"
"""The seed's dashboard shows CODIE's metrics at fixed routes."""

VpIdFilter = Annotated[str | None, QueryParameter(description="only this vp_id", max_length=MAX_ID_CHARS)]


class SessionController(Controller):
    path = "/ops/vp/sessions"
    tags = ["sessions"]

    @get(
        "/",
        operation_id="listSessions",
        summary="Worker sessions, newest first (a silent one shows as lost)",
        sync_to_thread=True,
        responses=error_docs([400, 401]),
    )
    def list_sessions(self, api: Api, vp_id: VpIdFilter = None) -> SessionList:
        storable(vp_id, "vp_id")
        return SessionList(sessions=[session_view(s.to_public()) for s in api.store.list_sessions(vp_id=vp_id)])


class ProfileController(Controller):
    path = "/ops/vp/profiles"
    tags = ["profiles"]

    @get(
        "/",
        operation_id="listProfiles",
        summary="The profiles this host serves (what vp_id a dispatch may name)",
        sync_to_thread=False,
        responses=error_docs([401]),
    )
    def list_profiles(self, api: Api) -> ProfileList:
        return ProfileList(
            profiles=[
                ProfileView(
                    vp_id=p.vp_id,
                    name=p.name,
                    description=p.description,
                    runtime=p.runtime,
                    mission_types=list(p.mission_types),
                )
                for p in sorted(api.registry.enabled.values(), key=lambda p: p.vp_id)
            ]
        )


class MetricsController(Controller):
    path = "/ops/metrics"
    tags = ["metrics"]

    @get(
        "/vp",
        operation_id="getVpMetrics",
        summary="Counts by status, queue depth and age, latencies, recovery and session health",
        sync_to_thread=True,
        responses=error_docs([400, 401]),
    )
    def vp(self, api: Api, vp_id: VpIdFilter = None) -> MetricsResponse:
        storable(vp_id, "vp_id")
        return MetricsResponse(metrics=vp_metrics(api.store, vp_id))

    @get(
        "/timeline",
        operation_id="getVpTimeline",
        summary="Per minute over the last hour: missions finished and queue depth",
        sync_to_thread=True,
        responses=error_docs([400, 401]),
    )
    def timeline(
        self,
        api: Api,
        vp_id: VpIdFilter = None,
        minutes: Annotated[int, QueryParameter(ge=1, le=24 * 60)] = 60,
    ) -> Timeline:
        storable(vp_id, "vp_id")
        points = timeline(api.store, minutes=minutes, vp_id=vp_id)
        return Timeline(
            vp_id=vp_id,
            points=[
                TimelinePoint(start=p.start.isoformat(), finished=p.finished, queue_depth=p.queue_depth) for p in points
            ],
        )

    @get(
        "/coder-vp",
        operation_id="getCoderVpMetrics",
        summary="vp.coder.primary metrics (the seed's route)",
        sync_to_thread=True,
        responses=error_docs([401]),
    )
    def coder_vp(self, api: Api) -> MetricsResponse:
        return MetricsResponse(metrics=vp_metrics(api.store, CODER_VP_ID))


class DashboardController(Controller):
    path = "/dashboard"
    tags = ["dashboard"]

    @get(
        "/metrics/coder-vp",
        operation_id="getDashboardCoderVpMetrics",
        summary="vp.coder.primary metrics in the dashboard's envelope",
        sync_to_thread=True,
        responses=error_docs([401]),
    )
    def coder_vp(self, api: Api) -> DashboardMetrics:
        return DashboardMetrics(status="ok", metrics=vp_metrics(api.store, CODER_VP_ID))
