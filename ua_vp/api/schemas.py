"""Request and response bodies of the ops API, as ``kw_only`` msgspec Structs.

They describe the wire format for validation and the OpenAPI document; the
values themselves come from ``to_public()`` of the store's objects, so the API
and ``ua-vp --json`` print the same shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ua_vp.missions import MAX_ID_CHARS, MAX_OBJECTIVE_CHARS, REPLY_MODES, Status

ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
ReplyMode = Literal["async", "sync", "none"]
Lane = Literal["in_process", "external"]
JsonObject = dict[str, Any]

assert set(ReplyMode.__args__) == REPLY_MODES, "ReplyMode drifted from ua_vp.missions.REPLY_MODES"  # type: ignore[attr-defined]


# Litestar drops a bound of 0 from the OpenAPI document (it tests truthiness), so it
# is restated through ``extra``; the validation itself is msgspec's ``ge``.
ZERO_MINIMUM = {"extra": {"minimum": 0}}
PRIORITY_META = msgspec.Meta(ge=0, le=1000, description="0 runs first; default 100", extra_json_schema=ZERO_MINIMUM)


class Schema(msgspec.Struct, kw_only=True):
    """Base of every body: keyword-only fields."""


class DispatchRequest(Schema, forbid_unknown_fields=True):
    """A mission for a VP agent. Unknown fields are refused so a typo is not silently dropped."""

    vp_id: Annotated[ShortText, msgspec.Meta(examples=["vp.general.primary"])]
    objective: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_OBJECTIVE_CHARS)]
    mission_type: ShortText | None = None
    constraints: JsonObject | None = None
    budget: Annotated[
        JsonObject | None,
        msgspec.Meta(description="max_seconds, max_tokens, max_output_bytes: positive numbers"),
    ] = None
    idempotency_key: ShortText | None = None
    priority: Annotated[int, PRIORITY_META] | None = None
    source_session_id: ShortText | None = None
    source_turn_id: ShortText | None = None
    reply_mode: ReplyMode | None = None
    run_id: ShortText | None = None


class MissionView(Schema):
    mission_id: str
    vp_id: str
    mission_type: str
    objective: str
    constraints: JsonObject
    budget: JsonObject
    status: Status
    priority: int
    attempt: int
    max_attempts: int
    lane: Lane
    worker_id: str | None
    lease_expires_at: str | None
    cancel_requested_at: str | None
    idempotency_key: str | None
    request_hash: str | None
    source_session_id: str | None
    source_turn_id: str | None
    reply_mode: str
    run_id: str | None
    result: JsonObject | None
    error: JsonObject | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class EventView(Schema):
    id: int
    mission_id: str
    vp_id: str
    event_type: str
    payload: JsonObject
    created_at: str


class SessionView(Schema):
    worker_id: str
    vp_id: str
    status: str
    lane: str
    pid: int
    host: str
    capacity: int
    active_missions: int
    started_at: str
    last_seen_at: str
    sandbox: str | None = None


class DispatchResponse(Schema):
    mission: MissionView
    lane: Lane
    created: bool
    """False when an idempotent replay returned the mission made earlier."""


class CancelResponse(Schema):
    mission: MissionView
    changed: bool
    """False when the mission was already terminal or already asked to cancel."""


class MissionResponse(Schema):
    mission: MissionView


class MissionList(Schema):
    missions: list[MissionView]


class EventList(Schema):
    events: list[EventView]


class SessionList(Schema):
    sessions: list[SessionView]


class MetricsResponse(Schema):
    metrics: JsonObject


class DashboardMetrics(Schema):
    status: Literal["ok"]
    metrics: JsonObject


class ProfileView(Schema):
    vp_id: str
    name: str
    description: str
    runtime: str
    mission_types: list[str]


class ProfileList(Schema):
    profiles: list[ProfileView]
    """Enabled on this host, by vp_id."""


class TimelinePoint(Schema):
    start: str
    """The minute's start (UTC, ISO 8601)."""
    finished: int
    """Missions that reached a terminal status in that minute."""
    queue_depth: int
    """Queued missions at the end of that minute."""


class Timeline(Schema):
    vp_id: str | None
    points: list[TimelinePoint]


class Health(Schema):
    status: Literal["ok"]


class Ready(Schema):
    status: Literal["ready"]
    database: str
    revision: str


class ErrorDetail(Schema):
    code: str
    message: str
    details: JsonObject


class ErrorBody(Schema):
    """Every 4xx/5xx answer: a stable ``code`` to branch on and a message a person can act on."""

    error: ErrorDetail


def mission_view(public: dict[str, Any]) -> MissionView:
    return msgspec.convert(public, MissionView)


def event_view(public: dict[str, Any]) -> EventView:
    return msgspec.convert(public, EventView)


def session_view(public: dict[str, Any]) -> SessionView:
    return msgspec.convert(public, SessionView)
