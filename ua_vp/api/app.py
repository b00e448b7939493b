"""The Litestar application factory.

``create_app`` only wires; each concern has its own small ``_configure_*`` step
(as litestar-fullstack's ``server/core.py`` does it). The store, the plugin
registry and the gateway are built here once (or passed in by tests) and reach
handlers through the ``api`` dependency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityRequirement
from litestar.types import ControllerRouterHandler, ExceptionHandlersMap, Guard

from ua_vp import __version__
from ua_vp.api.auth import SCHEME_NAME, SECURITY_SCHEME, bearer_guard
from ua_vp.api.callers import owner_guard, request_guards
from ua_vp.api.dashboard import DashboardPages, asset_routers, swagger_plugin
from ua_vp.api.deps import ApiState, Lane, provide_api
from ua_vp.api.errors import exception_handlers
from ua_vp.api.health import HealthController
from ua_vp.api.missions import MissionController
from ua_vp.api.ops import DashboardController, MetricsController, ProfileController, SessionController
from ua_vp.api.prometheus import PrometheusController
from ua_vp.api.streams import StreamLimits
from ua_vp.config import Settings
from ua_vp.dispatch import lane_for
from ua_vp.host import Host
from ua_vp.plugins import Registry
from ua_vp.store import MissionStore

log = structlog.get_logger(__name__)

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


def create_app(
    settings: Settings,
    *,
    store: MissionStore | None = None,
    registry: Registry | None = None,
    lanes: Sequence[Lane] | None = None,
    in_process_lane: bool = False,
) -> Litestar:
    """The ops API. ``lanes`` are started with the app unless external dispatch is on;
    ``in_process_lane`` adds the server's own workers (what ``ua-vp serve`` runs)."""
    api = _build_state(settings, store=store, registry=registry, lanes=lanes, in_process_lane=in_process_lane)
    return Litestar(
        route_handlers=_configure_routes(settings),
        guards=request_guards(settings),
        dependencies={"api": Provide(provide_api, sync_to_thread=False)},
        state=State({"api": api}),
        exception_handlers=_configure_exception_handlers(),
        openapi_config=_configure_openapi(settings),
        lifespan=[_configure_lifespan(api, owns_store=store is None)],
        request_max_body_size=settings.max_request_bytes,
        # structlog (ua_vp.logging) owns logging; Litestar must not reconfigure it.
        logging_config=None,
        debug=False,
    )


def _build_state(
    settings: Settings,
    *,
    store: MissionStore | None,
    registry: Registry | None,
    lanes: Sequence[Lane] | None,
    in_process_lane: bool,
) -> ApiState:
    host = Host(settings, store=store, registry=registry)
    # The registry first: a bad plugin setting fails before a database connection is opened.
    registry = host.registry
    store, gateway = host.store, host.gateway
    # External dispatch leaves every mission to `ua-vp worker` processes: no lane runs here.
    chosen = [] if settings.external_dispatch else list(lanes or [])
    if in_process_lane and not settings.external_dispatch:
        from ua_vp.worker import InProcessLane

        chosen.append(InProcessLane(settings=settings, store=store, registry=registry))
    streams = StreamLimits(total=settings.max_event_streams, per_client=settings.max_event_streams_per_client)
    return ApiState(settings=settings, store=store, registry=registry, gateway=gateway, lanes=chosen, streams=streams)


def _configure_routes(settings: Settings) -> list[ControllerRouterHandler]:
    guards: list[Guard] = []
    security: list[SecurityRequirement] | None = None
    if settings.ops_token is not None:
        guards.append(bearer_guard(settings.ops_token.get_secret_value()))
        security = [{SCHEME_NAME: []}]
    elif settings.tokenless_callers == "owner":
        guards.append(owner_guard())
    protected = Router(
        path="/api/v1",
        route_handlers=[
            MissionController,
            SessionController,
            ProfileController,
            MetricsController,
            DashboardController,
        ],
        guards=guards,
        security=security,
    )
    # The scrape target follows the same rule as the ops routes.
    scrape = Router(path="/", route_handlers=[PrometheusController], guards=guards, security=security)
    # The dashboard's pages and assets hold no data: every figure on them comes from
    # the protected routes above, fetched with the token the page asks for.
    return [protected, scrape, HealthController, DashboardPages, *asset_routers()]


def _configure_exception_handlers() -> ExceptionHandlersMap:
    return exception_handlers()


def _configure_openapi(settings: Settings) -> OpenAPIConfig:
    components = Components(security_schemes={SCHEME_NAME: SECURITY_SCHEME}) if settings.ops_token else None
    return OpenAPIConfig(
        title="ua-vp ops API",
        version=__version__,
        description="Dispatch missions to VP agents and watch them run. Errors are "
        '`{"error": {"code", "message", "details"}}` with a stable `code`.',
        path="/schema",
        render_plugins=[swagger_plugin()],
        components=components or [],
        use_handler_docstrings=False,
    )


def _configure_lifespan(api: ApiState, *, owns_store: bool) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        started: list[Lane] = []
        try:
            for lane in api.lanes:
                await lane.start()
                started.append(lane)
                api.gateway.doorbells.append(lane)
            if not api.lanes and not api.settings.external_dispatch:
                log.warning(
                    "in_process_lane_missing",
                    hint="missions wait in the database until a `ua-vp worker` claims them",
                )
            log.info("ops_api_started", lane=lane_for(api.settings), lanes=len(started))
            yield
        finally:
            for lane in reversed(started):
                api.gateway.doorbells.remove(lane)
                await lane.stop()
            if owns_store:
                api.store.engine.dispose()
            log.info("ops_api_stopped")

    return lifespan
