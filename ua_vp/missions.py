"""What a mission is: the envelope, its statuses, the legal transitions and event names.

Plain data only; the store is the one place that moves a mission between statuses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from ua_vp.errors import InvalidConstraint, InvalidRequest


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

# Every legal move. Terminal statuses have no way out; the store's WHERE clauses
# encode the same table so a racing writer cannot break it either.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    # running -> queued is the reaper giving an expired lease back to the queue.
    Status.RUNNING: frozenset({Status.QUEUED, *TERMINAL}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def can_transition(old: Status, new: Status) -> bool:
    return new in TRANSITIONS[old]


class Event(StrEnum):
    DISPATCHED = "vp.mission.dispatched"
    STARTED = "vp.mission.started"
    PROGRESS = "vp.mission.progress"
    CANCEL_REQUESTED = "vp.mission.cancel_requested"
    RETRIED = "vp.mission.retried"
    COMPLETED = "vp.mission.completed"
    FAILED = "vp.mission.failed"
    CANCELLED = "vp.mission.cancelled"


FINAL_EVENT = {
    Status.COMPLETED: Event.COMPLETED,
    Status.FAILED: Event.FAILED,
    Status.CANCELLED: Event.CANCELLED,
}

REPLY_MODES = frozenset({"async", "sync", "none"})
# Upper bounds keep every budget a finite number the worker can compute with
# (a 400-digit max_seconds once overflowed float() inside the worker).
BUDGET_LIMITS = {"max_seconds": 30 * 86_400, "max_tokens": 10**9, "max_output_bytes": 10**12}
BUDGET_KEYS = frozenset(BUDGET_LIMITS)
WHOLE_BUDGETS = frozenset({"max_tokens", "max_output_bytes"})
"""Budgets counted in whole units; ``max_seconds`` may be fractional."""
LANES = frozenset({"in_process", "external"})

MAX_OBJECTIVE_CHARS = 20_000
MAX_ID_CHARS = 200
DEFAULT_PRIORITY = 100


def parse_statuses(raw: str | list[str] | None) -> list[Status] | None:
    """``"queued,running"`` / ``["queued"]`` / ``"all"`` / None -> statuses (None = all)."""
    if raw is None:
        return None
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    names = [p.strip().lower() for p in parts if p.strip()]
    if not names or names == ["all"]:
        return None
    allowed = [s.value for s in Status]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise InvalidRequest(
            f"unknown status {', '.join(map(repr, bad))}; use 'all' or a comma list of {', '.join(allowed)}",
            field="status",
        )
    return [Status(n) for n in names]


def storable(value: Any, name: str) -> None:
    """Refuse text the databases cannot hold: PostgreSQL rejects NUL in text and in
    JSONB, and lone surrogates cannot be encoded at all. Checked before any write
    or query so the caller gets a clear error naming the field, not a database error."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest(f"{name} contains a NUL character, which cannot be stored", field=name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"{name} is not valid UTF-8 text", field=name) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key, name)
            storable(item, name)
    elif isinstance(value, list | tuple):
        for item in value:
            storable(item, name)


def _require_object(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be a JSON object, got {type(value).__name__}", field=name)
    return value


def _optional_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        raise InvalidRequest(f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters", field=name)
    return value


def _validate_budget(budget: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(budget) - BUDGET_KEYS)
    if unknown:
        raise InvalidRequest(
            f"unknown budget key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(BUDGET_KEYS))}",
            field="budget",
        )
    for key, value in budget.items():
        limit = BUDGET_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= limit:
            raise InvalidRequest(
                f"budget.{key} must be a number above 0 and at most {limit}, got {value!r}", field="budget"
            )
        if key in WHOLE_BUDGETS and value != int(value):
            # 0.5 tokens once became "max_tokens: 0" in a model request.
            raise InvalidRequest(
                f"budget.{key} must be a whole number from 1 to {limit}, got {value!r}", field="budget"
            )
    return budget


NETWORK_ON = frozenset({"true", "on", "yes", "allow"})
NETWORK_OFF = frozenset({"false", "off", "no", "none", "deny"})
"""The spellings of ``constraints.network`` besides JSON true/false (any case, spaces trimmed)."""


def network_allowed(constraints: dict[str, Any]) -> bool:
    """Whether ``constraints.network`` lets the mission use the network (absent or null: yes).

    Anything but a boolean or one of :data:`NETWORK_ON` / :data:`NETWORK_OFF` is an
    :class:`InvalidConstraint`: a spelling we do not know must never leave the network on.
    """
    value = constraints.get("network")
    if value is None or isinstance(value, bool):
        return value is not False
    if isinstance(value, str) and value.strip().lower() in NETWORK_ON | NETWORK_OFF:
        return value.strip().lower() in NETWORK_ON
    spellings = ", ".join(["true", "false", *(repr(s) for s in sorted(NETWORK_ON | NETWORK_OFF))])
    raise InvalidConstraint(
        f"constraints.network must be one of {spellings} (or absent for the default, on); got {value!r}",
        field="constraints.network",
    )


@dataclass(frozen=True, kw_only=True)
class MissionSpec:
    """A validated dispatch request. Build it with :meth:`create` to get the checks."""

    vp_id: str
    mission_type: str = "task"
    objective: str
    constraints: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY
    max_attempts: int = 3
    idempotency_key: str | None = None
    source_session_id: str | None = None
    source_turn_id: str | None = None
    reply_mode: str = "async"
    run_id: str | None = None
    lane: str = "external"

    @classmethod
    def create(cls, **kwargs: Any) -> MissionSpec:
        for name, value in kwargs.items():
            storable(value, name)
        vp_id = kwargs.get("vp_id")
        if not isinstance(vp_id, str) or not vp_id.strip() or len(vp_id) > MAX_ID_CHARS:
            raise InvalidRequest("vp_id must be a non-empty string such as 'vp.general.primary'", field="vp_id")
        objective = kwargs.get("objective")
        if not isinstance(objective, str) or not objective.strip():
            raise InvalidRequest(
                "objective must be a non-empty string saying what the mission should do", field="objective"
            )
        if len(objective) > MAX_OBJECTIVE_CHARS:
            raise InvalidRequest(f"objective is longer than {MAX_OBJECTIVE_CHARS} characters", field="objective")
        mission_type = kwargs.get("mission_type") or "task"
        if not isinstance(mission_type, str) or len(mission_type) > MAX_ID_CHARS:
            raise InvalidRequest("mission_type must be a short string such as 'task'", field="mission_type")
        priority = kwargs.get("priority", DEFAULT_PRIORITY)
        if priority is None:
            priority = DEFAULT_PRIORITY
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000:
            raise InvalidRequest("priority must be an integer from 0 (first) to 1000 (last)", field="priority")
        max_attempts = kwargs.get("max_attempts", 3)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 100:
            raise InvalidRequest("max_attempts must be an integer from 1 to 100", field="max_attempts")
        reply_mode = kwargs.get("reply_mode") or "async"
        if reply_mode not in REPLY_MODES:
            raise InvalidRequest(f"reply_mode must be one of {', '.join(sorted(REPLY_MODES))}", field="reply_mode")
        lane = kwargs.get("lane") or "external"
        if lane not in LANES:
            raise InvalidRequest(f"lane must be one of {', '.join(sorted(LANES))}", field="lane")
        constraints = _require_object("constraints", kwargs.get("constraints"))
        network_allowed(constraints)
        budget = _validate_budget(_require_object("budget", kwargs.get("budget")))
        try:
            # allow_nan=False: NaN and Infinity are not JSON; PostgreSQL refuses them.
            json.dumps(constraints, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"constraints must be JSON-serialisable: {exc}", field="constraints") from None
        return cls(
            vp_id=vp_id.strip(),
            mission_type=mission_type,
            objective=objective,
            constraints=constraints,
            budget=budget,
            priority=priority,
            max_attempts=max_attempts,
            idempotency_key=_optional_text("idempotency_key", kwargs.get("idempotency_key")),
            source_session_id=_optional_text("source_session_id", kwargs.get("source_session_id")),
            source_turn_id=_optional_text("source_turn_id", kwargs.get("source_turn_id")),
            reply_mode=reply_mode,
            run_id=_optional_text("run_id", kwargs.get("run_id")),
            lane=lane,
        )

    def request_hash(self) -> str:
        """Fingerprint of what the caller asked for; the lane is ours, not theirs."""
        body = asdict(self)
        body.pop("lane")
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Mission:
    """One row of ``vp_missions`` as the rest of the code sees it."""

    mission_id: str
    vp_id: str
    mission_type: str
    objective: str
    constraints: dict[str, Any]
    budget: dict[str, Any]
    status: Status
    priority: int
    attempt: int
    max_attempts: int
    lane: str
    worker_id: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    source_session_id: str | None = None
    source_turn_id: str | None = None
    reply_mode: str = "async"
    run_id: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_public(self) -> dict[str, Any]:
        """The JSON shape of the API and ``--json``: no lease token (it is a credential).
        Shallow on purpose: ``dataclasses.asdict`` deep-copies every JSON field and was
        two thirds of the cost of listing missions."""
        out = {name: _public(getattr(self, name)) for name in _MISSION_FIELDS}
        out["status"] = self.status.value
        return out


@dataclass(frozen=True, kw_only=True)
class MissionEvent:
    id: int
    mission_id: str
    vp_id: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime

    def to_public(self) -> dict[str, Any]:
        return {name: _public(getattr(self, name)) for name in _EVENT_FIELDS}


def _public(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


_MISSION_FIELDS = tuple(f.name for f in fields(Mission) if f.name != "lease_token")
_EVENT_FIELDS = tuple(f.name for f in fields(MissionEvent))


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat tells the worker."""

    lease_held: bool
    cancel_requested: bool
