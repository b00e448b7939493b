"""``/api/v1/ops/vp/missions``: dispatch, cancel, list, show, events."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from ua_vp.api.callers import require_json
from ua_vp.api.deps import Api, error_docs
from ua_vp.api.schemas import (
    CancelResponse,
    DispatchRequest,
    DispatchResponse,
    EventList,
    MissionList,
    MissionResponse,
    event_view,
    mission_view,
)
from ua_vp.api.sse import MAX_EVENT_ID, event_stream, parse_last_event_id
from ua_vp.errors import InvalidRequest, MissionNotFound
from ua_vp.missions import MAX_ID_CHARS, Mission, MissionEvent, parse_statuses, storable
from ua_vp.store import MissionStore
from ua_vp.store.store import MAX_LIST_LIMIT

MISSION_ID_CHARS = 64
"""Width of the mission_id column: a longer id cannot exist, so it is not looked up."""

MissionId = Annotated[str, PathParameter(description="e.g. vpm_0f3c...")]
# schema_extra restates the minimum: Litestar drops a bound of 0 from the document.
AFTER_ID = QueryParameter(
    ge=0, le=MAX_EVENT_ID, description="only events with a larger id", schema_extra={"minimum": 0}
)
VpIdFilter = Annotated[str | None, QueryParameter(description="only this vp_id", max_length=MAX_ID_CHARS)]


def _check_id(mission_id: str) -> str:
    """An id no mission can have (too long for the column, or holding text the
    database refuses in a query) is answered 404 without asking the database."""
    try:
        storable(mission_id, "mission_id")
    except InvalidRequest:
        raise MissionNotFound("no mission with that id (it holds characters no mission id has)") from None
    if len(mission_id) > MISSION_ID_CHARS:
        raise MissionNotFound(f"no mission with id {mission_id[:MISSION_ID_CHARS]!r}... (ids are short)")
    return mission_id


def _get(store: MissionStore, mission_id: str) -> Mission:
    return store.get(_check_id(mission_id))


def _events(store: MissionStore, mission_id: str, after_id: int) -> list[MissionEvent]:
    _get(store, mission_id)  # 404 for an unknown mission rather than an empty list
    return store.events(mission_id, after_id=after_id)


class MissionController(Controller):
    path = "/ops/vp/missions"
    tags = ["missions"]

    @post(
        "/dispatch",
        operation_id="dispatchMission",
        summary="Dispatch a mission to a VP agent",
        description="201 with the new mission; 200 with `created: false` when the idempotency key "
        "was used before for the same request. Nothing is written on any error.",
        status_code=201,
        sync_to_thread=True,
        guards=[require_json],
        responses={
            200: ResponseSpec(DispatchResponse, description="idempotent replay: the mission made earlier"),
            **error_docs([400, 401, 403, 409, 413, 415, 422]),
        },
    )
    def dispatch(self, data: JSONBody[DispatchRequest], api: Api) -> Response[DispatchResponse]:
        # MissionSpec.create (inside dispatch) refuses text the database cannot store.
        enqueued = api.gateway.dispatch(**msgspec.structs.asdict(data))
        mission = enqueued.mission
        body = DispatchResponse(
            mission=mission_view(mission.to_public()),
            lane="in_process" if mission.lane == "in_process" else "external",
            created=enqueued.created,
        )
        return Response(body, status_code=201 if enqueued.created else 200)

    @post(
        "/{mission_id:str}/cancel",
        operation_id="cancelMission",
        summary="Cancel a mission: at once if queued, through its worker if running",
        description="`changed: false` when it was already over or already asked to cancel.",
        status_code=202,
        sync_to_thread=True,
        responses=error_docs([401, 404]),
    )
    def cancel(self, mission_id: MissionId, api: Api) -> CancelResponse:
        outcome = api.gateway.cancel(_check_id(mission_id))
        return CancelResponse(mission=mission_view(outcome.mission.to_public()), changed=outcome.changed)

    @get(
        "/",
        operation_id="listMissions",
        summary="List missions, newest first",
        sync_to_thread=True,
        responses=error_docs([400, 401]),
    )
    def list_missions(
        self,
        api: Api,
        vp_id: VpIdFilter = None,
        status: Annotated[
            str, QueryParameter(description="'all' or a comma list of queued, running, completed, failed, cancelled")
        ] = "all",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIST_LIMIT)] = 50,
        before: Annotated[
            str | None,
            QueryParameter(description="a mission_id: the page after it (keyset paging)", max_length=MISSION_ID_CHARS),
        ] = None,
        q: Annotated[
            str | None, QueryParameter(description="only mission ids starting with this", max_length=MISSION_ID_CHARS)
        ] = None,
    ) -> MissionList:
        storable(vp_id, "vp_id")
        storable(before, "before")
        storable(q, "q")
        found = api.store.list_missions(
            vp_id=vp_id, statuses=parse_statuses(status), limit=limit, before=before or None, id_prefix=q or None
        )
        return MissionList(missions=[mission_view(m.to_public()) for m in found])

    @get(
        "/{mission_id:str}",
        operation_id="getMission",
        summary="Show one mission",
        sync_to_thread=True,
        responses=error_docs([401, 404]),
    )
    def show(self, mission_id: MissionId, api: Api) -> MissionResponse:
        return MissionResponse(mission=mission_view(_get(api.store, mission_id).to_public()))

    @get(
        "/{mission_id:str}/events",
        operation_id="listMissionEvents",
        summary="A mission's events, as JSON or as Server-Sent Events",
        description="With `Accept: text/event-stream` (or `?stream=1`): Server-Sent Events, replaying "
        "the events after `Last-Event-ID` (or `after_id`) and then following new ones; each message is "
        "`id: <event id>`, `event: <event_type>`, `data: <event JSON>`. The stream ends after the "
        "mission's terminal event. Otherwise JSON, up to 1000 events after `after_id`. Streams are "
        "capped in total and per client (429 `too_many_streams`).",
        responses=error_docs([400, 401, 404, 429]),
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        mission_id: MissionId,
        api: Api,
        after_id: Annotated[int, AFTER_ID] = 0,
        stream: Annotated[bool, QueryParameter(description="Server-Sent Events whatever Accept says")] = False,
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", required=False)] = None,
    ) -> Response[EventList]:
        if stream or "text/event-stream" in request.headers.get("accept", ""):
            start = parse_last_event_id(last_event_id, after_id)
            await anyio.to_thread.run_sync(_get, api.store, mission_id)
            client = request.client.host if request.client else "unknown"
            return event_stream(api.store, mission_id, start, api.stopping, api.streams, client)  # type: ignore[return-value]
        found = await anyio.to_thread.run_sync(_events, api.store, mission_id, after_id)
        return Response(EventList(events=[event_view(e.to_public()) for e in found]))
