"""Rows to dataclasses, and the event rows a transition writes."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row

from ua_vp.missions import Mission, MissionEvent, Status, Transition


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# Mission fields are named after their columns; only these need converting.
_MISSION_COLUMNS = tuple(f.name for f in fields(Mission))
_TIMESTAMPS = ("lease_expires_at", "cancel_requested_at", "created_at", "started_at", "finished_at")


def storable_json(value: Any) -> Any:
    """What agents print goes into JSON columns: PostgreSQL refuses NUL in text and
    nothing can encode a lone surrogate (undecodable file names). Replace both rather
    than let one odd byte make a finalize fail forever."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {storable_json(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value


def mission(row: Row[Any]) -> Mission:
    m = row._mapping
    values = {name: m[name] for name in _MISSION_COLUMNS}
    values.update({name: aware(values[name]) for name in _TIMESTAMPS})
    values.update(
        status=Status(values["status"]), constraints=values["constraints"] or {}, budget=values["budget"] or {}
    )
    return Mission(**values)


def event(row: Row[Any]) -> MissionEvent:
    m = row._mapping
    return MissionEvent(
        id=m["id"],
        mission_id=m["mission_id"],
        vp_id=m["vp_id"],
        event_type=m["event_type"],
        payload=m["payload"] or {},
        created_at=aware(m["created_at"]) or utcnow(),
    )


def returned_event(row: Row[Any]) -> MissionEvent | None:
    """The event a PostgreSQL one-statement operation returned beside its mission."""
    m = row._mapping
    if "ev_id" not in m:
        return None
    return MissionEvent(
        id=m["ev_id"],
        mission_id=m["mission_id"],
        vp_id=m["vp_id"],
        event_type=m["ev_event_type"],
        payload=m["ev_payload"],
        created_at=aware(m["ev_created_at"]) or utcnow(),
    )


def event_row(transition: Transition, m: Mission, *, status: Status | None = None, **extra: Any) -> dict[str, Any]:
    """The event ``transition`` writes for mission ``m`` (now in its new status, or
    ``status``): the payload holds exactly the transition's payload keys, from
    ``extra`` or the row."""
    event_type = transition.outcomes[status or m.status]
    assert event_type is not None, f"{transition.name} writes no event for {m.status.value}"
    payload = {key: extra[key] if key in extra else getattr(m, key) for key in transition.payload}
    return {"mission_id": m.mission_id, "vp_id": m.vp_id, "event_type": event_type.value, "payload": payload}
