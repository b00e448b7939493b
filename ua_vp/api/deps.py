"""What handlers get injected (:class:`ApiState`), and the small checks they share."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import SkipValidation

from ua_vp.api.schemas import ErrorBody
from ua_vp.api.streams import StreamLimits
from ua_vp.config import Settings
from ua_vp.dispatch import Gateway
from ua_vp.plugins import Registry
from ua_vp.store import MissionStore


class Lane(Protocol):
    """An in-process lane (``ua_vp.worker.InProcessLane``): workers inside the server's loop."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def wake(self, vp_id: str) -> None: ...

    def cancel(self, vp_id: str, mission_id: str) -> None: ...


@dataclass
class ApiState:
    settings: Settings
    store: MissionStore
    registry: Registry
    gateway: Gateway
    streams: StreamLimits
    """Open event streams, against UA_VP_MAX_EVENT_STREAMS(_PER_CLIENT)."""
    lanes: list[Lane] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the server was told to stop: event streams end instead of holding shutdown up."""


# skip_validation: the state is ours, not the caller's; validating it would make
# Litestar resolve every annotation inside it on each request.
Api = SkipValidation[ApiState]
"""How a handler asks for the state: ``def handler(api: Api)``."""


def provide_api(state: State) -> ApiState:
    api: ApiState = state.api
    return api


def error_docs(statuses: Iterable[int]) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error answers a route can give (all share one body)."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=ERROR_DESCRIPTIONS[status], generate_examples=False)
        for status in statuses
    }


ERROR_DESCRIPTIONS = {
    400: "invalid_request: malformed JSON, a wrong type, a missing or unknown field, a bad value; "
    "host_not_allowed: the Host header is not a name of this server",
    401: "unauthorized: missing or wrong `Authorization: Bearer` token (when UA_VP_OPS_TOKEN is set)",
    403: "guard_violation: a path in constraints breaks a path-guard rule; origin_not_allowed: sent by "
    "another web page; caller_not_allowed: no token and the caller is not the server's OS user",
    404: "mission_not_found",
    409: "idempotency_conflict: the key was used before for a different request",
    413: "request_too_large: the body is larger than UA_VP_MAX_REQUEST_BYTES",
    415: "unsupported_media_type: the body must be sent as `Content-Type: application/json`",
    422: "unknown_vp_id / vp_id_disabled: details list the installed and enabled ids; "
    "too_many_paths: constraints name more paths than one mission may",
    429: "too_many_streams: too many event streams are open (in total or from this client)",
    503: "database_not_migrated / database_unavailable",
}
