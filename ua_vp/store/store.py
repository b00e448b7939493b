"""MissionStore: the only code that writes missions, events and sessions.

Every status change is one transaction that also writes its event row, so the
history can never disagree with the row. The statements that decide who runs
what (claim, heartbeat, finalize, reap) guard themselves in their WHERE clause
(``status``, ``lease_token``), so a racing or stale writer changes nothing.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Engine, Text, and_, case, cast, func, insert, literal, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.sql import ColumnElement

from ua_vp.errors import IdempotencyConflict, InvalidRequest, MissionNotFound
from ua_vp.missions import (
    FINAL_EVENT,
    TERMINAL,
    Event,
    Heartbeat,
    Mission,
    MissionEvent,
    MissionSpec,
    Status,
)
from ua_vp.redact import redact_data
from ua_vp.store import db, pg_sql
from ua_vp.store.tables import Timestamp, events, missions, sessions

NOTIFY_CHANNEL = pg_sql.NOTIFY_CHANNEL
MAX_LIST_LIMIT = 500
MAX_CLAIM_BATCH = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
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


def _mission(row: Row[Any]) -> Mission:
    m = row._mapping
    values = {name: m[name] for name in _MISSION_COLUMNS}
    values.update({name: _aware(values[name]) for name in _TIMESTAMPS})
    values.update(
        status=Status(values["status"]), constraints=values["constraints"] or {}, budget=values["budget"] or {}
    )
    return Mission(**values)


def _event(row: Row[Any]) -> MissionEvent:
    m = row._mapping
    return MissionEvent(
        id=m["id"],
        mission_id=m["mission_id"],
        vp_id=m["vp_id"],
        event_type=m["event_type"],
        payload=m["payload"] or {},
        created_at=_aware(m["created_at"]) or utcnow(),
    )


@dataclass(frozen=True)
class Enqueued:
    mission: Mission
    created: bool
    """False when an idempotent replay returned the mission made earlier."""


@dataclass(frozen=True)
class CancelOutcome:
    mission: Mission
    changed: bool
    """False when the mission was already terminal or already asked to cancel."""


@dataclass(frozen=True)
class SessionInfo:
    worker_id: str
    vp_id: str
    status: str
    lane: str
    pid: int
    host: str
    capacity: int
    active_missions: int
    started_at: datetime
    last_seen_at: datetime
    sandbox: str | None = None
    """Sandbox backend the worker runs agents in (bwrap, landlock, none); None if unknown."""

    def to_public(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "started_at": self.started_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
        }


class SqliteWatch:
    """See :meth:`MissionStore.sqlite_watch`. Holds one pooled connection until closed."""

    QUEUED = "SELECT 1 FROM vp_missions WHERE vp_id = ? AND status = 'queued' LIMIT 1"

    def __init__(self, conn: Any, vp_id: str) -> None:
        self._conn = conn
        self._vp_id = vp_id
        self._last = self._version()

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        version = self._version()
        if version == self._last:
            return False
        self._last = version
        return self._conn.execute(self.QUEUED, (self._vp_id,)).fetchone() is not None

    def close(self) -> None:
        self._conn.close()


class MissionStore:
    """Mission, event and session persistence over one SQLAlchemy engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        lease_ttl_seconds: float = 120.0,
        on_events: Callable[[list[MissionEvent]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.lease_ttl = timedelta(seconds=lease_ttl_seconds)
        self.is_postgres = engine.dialect.name == "postgresql"
        # Same pool; the hot-path statements of pg_sql are atomic on their own.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.on_events = on_events
        """Called with the events of each transaction after it committed (observer hooks)."""

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction; its events are published only once it committed.
        On SQLite it begins IMMEDIATE (see ``db._on_begin``); reads stay deferred."""
        with self.engine.connect() as conn, conn.execution_options(ua_vp_write=True).begin():
            written: list[MissionEvent] = []
            conn.info["ua_vp_events"] = written
            try:
                yield conn
            finally:
                # A connection the server dropped is invalidated, and touching its
                # info would raise PendingRollbackError over the real (retryable)
                # OperationalError: a PostgreSQL restart then killed workers.
                if not conn.invalidated:
                    conn.info.pop("ua_vp_events", None)
        if written and self.on_events is not None:
            self.on_events(written)

    # -- SQL fragments that differ by backend ------------------------------------
    def _now(self) -> ColumnElement[datetime]:
        # PostgreSQL: the database clock, shared by every host; leases stay
        # comparable whatever the workers' clocks say. SQLite: one machine.
        if self.is_postgres:
            return func.now()
        return literal(utcnow(), Timestamp)

    def _later(self, delta: timedelta) -> ColumnElement[datetime]:
        if self.is_postgres:
            return func.now() + delta
        return literal(utcnow() + delta, Timestamp)

    def _new_token(self) -> ColumnElement[str]:
        # Generated per row inside the statement, so one batched claim gives
        # every mission its own fencing token.
        if self.is_postgres:
            return func.replace(cast(func.gen_random_uuid(), Text), "-", "")
        return func.lower(func.hex(func.randomblob(16)))

    def _one_statement(self, sql: str, **params: Any) -> list[Row[Any]]:
        """Run one of the ``pg_sql`` statements in autocommit (one round trip) and
        publish the event each returned row carries."""
        with self._autocommit.connect() as conn:
            rows = list(conn.exec_driver_sql(sql, params))
        written = [
            MissionEvent(
                id=m["ev_id"],
                mission_id=m["mission_id"],
                vp_id=m["vp_id"],
                event_type=m["ev_event_type"],
                payload=m["ev_payload"],
                created_at=m["ev_created_at"],
            )
            for m in (r._mapping for r in rows)
            if "ev_id" in m
        ]
        if written and self.on_events is not None:
            self.on_events(written)
        return rows

    def _notify(self, conn: Connection, kind: str, vp_id: str, mission_id: str) -> None:
        # Delivered at COMMIT, so a listener never sees a mission it cannot read yet.
        if self.is_postgres:
            conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, f"{kind}:{vp_id}:{mission_id}")))

    def _write_events(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[MissionEvent]:
        if not rows:
            return []
        # One cached statement run with many parameter sets (SQLAlchemy batches it
        # into a single multi-row INSERT); a literal multi-VALUES insert would be
        # compiled anew on every call.
        stmt = insert(events).values(created_at=self._now()).returning(*events.c, sort_by_parameter_order=True)
        written = [_event(r) for r in conn.execute(stmt, list(rows))]
        conn.info["ua_vp_events"].extend(written)
        return written

    # -- enqueue ---------------------------------------------------------------------
    def enqueue(self, spec: MissionSpec) -> Enqueued:
        """Insert a queued mission; an ``idempotency_key`` seen before returns the earlier
        mission for the same request and raises :class:`IdempotencyConflict` otherwise."""
        request_hash = spec.request_hash()
        values = {
            "mission_id": f"vpm_{uuid.uuid4().hex}",
            "vp_id": spec.vp_id,
            "mission_type": spec.mission_type,
            "objective": spec.objective,
            "constraints": spec.constraints,
            "budget": spec.budget,
            "status": Status.QUEUED.value,
            "priority": spec.priority,
            "attempt": 0,
            "max_attempts": spec.max_attempts,
            "lane": spec.lane,
            "idempotency_key": spec.idempotency_key,
            "request_hash": request_hash,
            "source_session_id": spec.source_session_id,
            "source_turn_id": spec.source_turn_id,
            "reply_mode": spec.reply_mode,
            "run_id": spec.run_id,
        }
        if self.is_postgres:
            rows = self._one_statement(
                pg_sql.ENQUEUE, **{**values, "constraints": Jsonb(spec.constraints), "budget": Jsonb(spec.budget)}
            )
            if rows:
                return Enqueued(_mission(rows[0]), created=True)
            return self._replay(spec, request_hash)
        stmt = (
            sqlite_insert(missions)
            .values({**values, "created_at": self._now()})
            .on_conflict_do_nothing(index_elements=["vp_id", "idempotency_key"])
            .returning(*missions.c)
        )
        with self._tx() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                return self._replay(spec, request_hash, conn)
            mission = _mission(row)
            self._write_events(
                conn,
                [self._event_row(mission, Event.DISPATCHED, {"lane": mission.lane, "priority": mission.priority})],
            )
        return Enqueued(mission, created=True)

    def _replay(self, spec: MissionSpec, request_hash: str, conn: Connection | None = None) -> Enqueued:
        """The idempotency key was taken for this vp_id: same request -> that mission, else a
        conflict. The conflict names no mission: the key may be another caller's."""
        query = select(missions).where(
            missions.c.vp_id == spec.vp_id, missions.c.idempotency_key == spec.idempotency_key
        )
        if conn is None:
            with self.engine.connect() as own:
                existing = _mission(own.execute(query).one())
        else:
            existing = _mission(conn.execute(query).one())
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(
                f"idempotency_key {spec.idempotency_key!r} was already used for a different {spec.vp_id} "
                "request; use a new key for a new request",
                vp_id=spec.vp_id,
            )
        return Enqueued(existing, created=False)

    @staticmethod
    def _event_row(mission: Mission, event: Event, payload: dict[str, Any]) -> dict[str, Any]:
        return {"mission_id": mission.mission_id, "vp_id": mission.vp_id, "event_type": event.value, "payload": payload}

    # -- SQLite's stand-in for LISTEN --------------------------------------------------
    def sqlite_watch(self, vp_id: str) -> SqliteWatch:
        """SQLite: a check, cheap enough to call many times a second, that is True when some
        other connection committed since the last call and ``vp_id`` has a queued mission.

        ``PRAGMA data_version`` on one dedicated connection changes exactly when another
        connection commits (it reads the WAL index, no I/O), so an idle worker learns of a
        mission another process queued (``ua-vp dispatch`` without ``--api``) at once
        instead of at its next poll. Only then does it look for a queued row, through the
        partial index; a worker is woken for its own profile's missions only."""
        return SqliteWatch(self.engine.raw_connection(), vp_id)

    # -- claim -------------------------------------------------------------------------
    def claim(self, vp_id: str, worker_id: str, limit: int = 1) -> list[Mission]:
        """Take up to ``limit`` queued missions of ``vp_id``: lower priority first, then oldest.

        PostgreSQL runs ``pg_sql.CLAIM`` (one statement: SKIP LOCKED pick, update,
        started events). SQLite runs the same shape below inside BEGIN IMMEDIATE,
        which already serialises writers, so it needs no row locks.
        """
        if not 1 <= limit <= MAX_CLAIM_BATCH:
            raise InvalidRequest(f"claim limit must be from 1 to {MAX_CLAIM_BATCH}, got {limit}")
        if self.is_postgres:
            rows = self._one_statement(
                pg_sql.claim(limit), vp_id=vp_id, worker_id=worker_id, ttl=self.lease_ttl.total_seconds()
            )
            return [_mission(r) for r in rows]
        picked = (
            select(missions.c.mission_id)
            .where(missions.c.vp_id == vp_id, missions.c.status == Status.QUEUED.value)
            .order_by(missions.c.priority, missions.c.created_at, missions.c.mission_id)
            .limit(limit)
            .cte("picked")
        )
        stmt = (
            update(missions)
            .where(missions.c.mission_id == picked.c.mission_id, missions.c.status == Status.QUEUED.value)
            .values(
                status=Status.RUNNING.value,
                attempt=missions.c.attempt + 1,
                worker_id=worker_id,
                lease_token=self._new_token(),
                lease_expires_at=self._later(self.lease_ttl),
                started_at=func.coalesce(missions.c.started_at, self._now()),
            )
            .returning(*missions.c)
        )
        with self._tx() as conn:
            claimed = sorted(
                (_mission(r) for r in conn.execute(stmt)), key=lambda m: (m.priority, m.created_at, m.mission_id)
            )
            self._write_events(
                conn,
                [self._event_row(m, Event.STARTED, {"worker_id": worker_id, "attempt": m.attempt}) for m in claimed],
            )
        return claimed

    # -- heartbeat ---------------------------------------------------------------------
    def heartbeat(self, mission_id: str, lease_token: str) -> Heartbeat:
        """Extend the lease. ``lease_held=False`` means: stop, and do not finalize."""
        if self.is_postgres:
            found = self._one_statement(
                pg_sql.HEARTBEAT, mission_id=mission_id, lease_token=lease_token, ttl=self.lease_ttl.total_seconds()
            )
            return Heartbeat(lease_held=bool(found), cancel_requested=bool(found) and found[0][0] is not None)
        stmt = (
            update(missions)
            .where(
                missions.c.mission_id == mission_id,
                missions.c.lease_token == lease_token,
                missions.c.status == Status.RUNNING.value,
            )
            .values(lease_expires_at=self._later(self.lease_ttl))
            .returning(missions.c.cancel_requested_at)
        )
        with self._tx() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return Heartbeat(lease_held=False, cancel_requested=False)
        return Heartbeat(lease_held=True, cancel_requested=row[0] is not None)

    # -- cancel ------------------------------------------------------------------------
    def request_cancel(self, mission_id: str, *, reason: str = "requested") -> CancelOutcome:
        """Queued: cancelled at once. Running: flagged for its worker (and NOTIFY).
        Terminal or already flagged: returned unchanged."""
        queued = missions.c.status == Status.QUEUED.value
        # One statement for both cases: should a reaper move the mission from running
        # back to queued meanwhile, PostgreSQL re-checks the WHERE and the CASE on the
        # row as it is now, so the cancel is never lost between two statements.
        stmt = (
            update(missions)
            .where(
                missions.c.mission_id == mission_id,
                missions.c.status.in_([Status.QUEUED.value, Status.RUNNING.value]),
                missions.c.cancel_requested_at.is_(None),
            )
            .values(
                status=case((queued, Status.CANCELLED.value), else_=missions.c.status),
                cancel_requested_at=self._now(),
                finished_at=case((queued, self._now()), else_=missions.c.finished_at),
            )
            .returning(*missions.c)
        )
        with self._tx() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                existing = conn.execute(select(missions).where(missions.c.mission_id == mission_id)).first()
                if existing is None:
                    raise MissionNotFound(f"no mission with id {mission_id!r}", mission_id=mission_id)
                return CancelOutcome(_mission(existing), changed=False)
            mission = _mission(row)
            asked = self._event_row(mission, Event.CANCEL_REQUESTED, {"reason": reason})
            if mission.status is Status.RUNNING:
                self._write_events(conn, [asked])
                self._notify(conn, "cancel", mission.vp_id, mission.mission_id)
                return CancelOutcome(mission, changed=True)
            error = {"code": "cancelled", "message": f"cancelled before it started ({reason})"}
            mission = _mission(
                conn.execute(
                    update(missions)
                    .where(missions.c.mission_id == mission_id)
                    .values(error=error)
                    .returning(*missions.c)
                ).one()
            )
            self._write_events(
                conn, [asked, self._event_row(mission, Event.CANCELLED, {"reason": reason, "was": "queued"})]
            )
            return CancelOutcome(mission, changed=True)

    # -- finalize ----------------------------------------------------------------------
    def finalize(
        self,
        mission_id: str,
        lease_token: str,
        status: Status,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> Mission | None:
        """End a running mission. Fenced by ``lease_token``: a worker whose lease was
        reaped (and perhaps re-claimed by another) gets None and nothing is written."""
        if status not in TERMINAL:
            raise InvalidRequest(f"finalize needs a terminal status, got {status.value!r}")
        # Errors quote what runtimes and agents said, which may include a credential.
        result, error = storable_json(result), redact_data(storable_json(error))
        if self.is_postgres:
            rows = self._one_statement(
                pg_sql.FINALIZE,
                mission_id=mission_id,
                lease_token=lease_token,
                status=status.value,
                result=Jsonb(result) if result is not None else None,
                error=Jsonb(error) if error is not None else None,
                event_type=FINAL_EVENT[status].value,
            )
            return _mission(rows[0]) if rows else None
        stmt = (
            update(missions)
            .where(
                missions.c.mission_id == mission_id,
                missions.c.lease_token == lease_token,
                missions.c.status == Status.RUNNING.value,
            )
            .values(
                status=status.value,
                result=result,
                error=error,
                finished_at=self._now(),
                lease_token=None,
                lease_expires_at=None,
            )
            .returning(*missions.c)
        )
        with self._tx() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                return None
            mission = _mission(row)
            payload: dict[str, Any] = {"attempt": mission.attempt, "worker_id": mission.worker_id}
            if error is not None:
                payload["error"] = error
            self._write_events(conn, [self._event_row(mission, FINAL_EVENT[status], payload)])
        return mission

    def release(self, mission_id: str, lease_token: str, *, reason: str) -> Mission | None:
        """Give a running mission back now (a draining worker's grace ran out) instead of
        making it wait for its lease to expire. Fenced like finalize; ends as a reaped
        mission would: cancelled if cancel was asked, failed if out of attempts."""
        mine = and_(
            missions.c.mission_id == mission_id,
            missions.c.lease_token == lease_token,
            missions.c.status == Status.RUNNING.value,
        )
        with self._tx() as conn:
            out = self._give_back(conn, mine, reason=reason, why=f"released by its worker ({reason})")
        return out[0] if out else None

    def add_progress(self, mission_id: str, lease_token: str, payloads: Iterable[dict[str, Any]]) -> bool:
        """Record progress events while the lease is held; False (nothing written) otherwise."""
        payloads = [redact_data(storable_json(p)) for p in payloads]
        with self._tx() as conn:
            row = conn.execute(
                select(missions.c.vp_id)
                .where(
                    missions.c.mission_id == mission_id,
                    missions.c.lease_token == lease_token,
                    missions.c.status == Status.RUNNING.value,
                )
                # FOR SHARE: a reap or finalize cannot commit between this check and
                # the insert below, so no progress lands after the final event.
                .with_for_update(read=True)
            ).first()
            if row is None:
                return False
            self._write_events(
                conn,
                [
                    {"mission_id": mission_id, "vp_id": row[0], "event_type": Event.PROGRESS.value, "payload": p}
                    for p in payloads
                ],
            )
        return True

    # -- reap ----------------------------------------------------------------------------
    def reap(self, limit: int = 100) -> list[Mission]:
        """Recover running missions whose lease expired: requeue them while attempts
        remain, fail them (``lease_expired``) when not, cancel them if cancel was asked.

        Safe from every process at once: SKIP LOCKED lets concurrent reapers split
        the work, and the outer WHERE re-checks the expiry so a heartbeat that won
        the race keeps its mission.
        """
        expired = and_(missions.c.status == Status.RUNNING.value, missions.c.lease_expires_at < self._now())
        with self._tx() as conn:
            victims = (
                select(missions.c.mission_id)
                .where(expired)
                .order_by(missions.c.lease_expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .cte("victims")
                .prefix_with("MATERIALIZED")
            )
            chosen = and_(missions.c.mission_id == victims.c.mission_id, expired)
            return self._give_back(conn, chosen, reason="lease_expired", why="the worker's lease expired")

    def _give_back(self, conn: Connection, chosen: ColumnElement[bool], *, reason: str, why: str) -> list[Mission]:
        """Take the ``chosen`` running missions away from their worker: cancelled when
        cancel was asked (never back to the queue), failed with code ``reason`` when out
        of attempts, queued again otherwise. Writes the errors and events."""
        cancelled = missions.c.cancel_requested_at.is_not(None)
        exhausted = missions.c.attempt >= missions.c.max_attempts
        stmt = (
            update(missions)
            .where(chosen)
            .values(
                status=case(
                    (cancelled, Status.CANCELLED.value), (exhausted, Status.FAILED.value), else_=Status.QUEUED.value
                ),
                worker_id=None,
                lease_token=None,
                lease_expires_at=None,
                finished_at=case((cancelled | exhausted, self._now()), else_=None),
            )
            .returning(*missions.c)
        )
        out: list[Mission] = []
        event_rows = []
        for m in [_mission(r) for r in conn.execute(stmt)]:
            if m.status is Status.QUEUED:
                event_rows.append(self._event_row(m, Event.RETRIED, {"reason": reason, "attempt": m.attempt}))
                self._notify(conn, "queued", m.vp_id, m.mission_id)
                out.append(m)
                continue
            # The JSON error is set per outcome here rather than in the CASE above,
            # which would need backend-specific JSON literals.
            if m.status is Status.CANCELLED:
                error = {"code": "cancelled", "message": f"cancelled; {why} before it finished"}
            else:
                error = {"code": reason, "message": f"{why} on attempt {m.attempt} of {m.max_attempts}"}
            final = conn.execute(
                update(missions).where(missions.c.mission_id == m.mission_id).values(error=error).returning(*missions.c)
            ).one()
            out.append(_mission(final))
            event_rows.append(self._event_row(m, FINAL_EVENT[m.status], {"error": error, "attempt": m.attempt}))
        self._write_events(conn, event_rows)
        return out

    # -- reads -----------------------------------------------------------------------------
    def get(self, mission_id: str) -> Mission:
        with self.engine.connect() as conn:
            row = conn.execute(select(missions).where(missions.c.mission_id == mission_id)).first()
        if row is None:
            raise MissionNotFound(f"no mission with id {mission_id!r}", mission_id=mission_id)
        return _mission(row)

    def list_missions(
        self,
        *,
        vp_id: str | None = None,
        statuses: Sequence[Status] | None = None,
        limit: int = 50,
        before: str | None = None,
        id_prefix: str | None = None,
    ) -> list[Mission]:
        """Newest first. ``before`` (a mission id) pages on: only missions listed after
        it; ``id_prefix`` keeps the missions whose id starts with it."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequest(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}", field="limit")
        m = missions.c
        query = select(missions).order_by(m.created_at.desc(), m.mission_id.desc()).limit(limit)
        if vp_id:
            query = query.where(m.vp_id == vp_id)
        if statuses:
            query = query.where(m.status.in_([s.value for s in statuses]))
        if id_prefix:
            query = query.where(m.mission_id.startswith(id_prefix, autoescape=True))
        with self.engine.connect() as conn:
            if before:
                anchor = conn.execute(select(m.created_at).where(m.mission_id == before)).scalar()
                if anchor is None:
                    raise InvalidRequest(f"before: no mission with id {before!r} to page from", field="before")
                # Keyset paging on (created_at, mission_id); the first term alone is an index range.
                query = query.where(m.created_at <= anchor, or_(m.created_at < anchor, m.mission_id < before))
            return [_mission(r) for r in conn.execute(query)]

    def events(self, mission_id: str, *, after_id: int = 0, limit: int = 1000) -> list[MissionEvent]:
        """In the order they were written."""
        query = (
            select(events)
            .where(events.c.mission_id == mission_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_event(r) for r in conn.execute(query)]

    def recent_events(self, *, vp_id: str | None = None, limit: int = 20) -> list[MissionEvent]:
        query = select(events).order_by(events.c.id.desc()).limit(limit)
        if vp_id:
            query = query.where(events.c.vp_id == vp_id)
        with self.engine.connect() as conn:
            return [_event(r) for r in conn.execute(query)]

    # -- sessions ---------------------------------------------------------------------------
    def register_session(
        self, *, worker_id: str, vp_id: str, capacity: int, lane: str, sandbox: str | None = None
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                insert(sessions).values(
                    worker_id=worker_id,
                    vp_id=vp_id,
                    status="idle",
                    lane=lane,
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    capacity=capacity,
                    active_missions=0,
                    started_at=self._now(),
                    last_seen_at=self._now(),
                    sandbox=sandbox,
                )
            )

    def touch_session(self, worker_id: str, *, status: str, active_missions: int) -> None:
        with self._tx() as conn:
            conn.execute(
                update(sessions)
                .where(sessions.c.worker_id == worker_id)
                .values(status=status, active_missions=active_missions, last_seen_at=self._now())
            )

    def list_sessions(self, *, vp_id: str | None = None, include_stopped: bool = True) -> list[SessionInfo]:
        """Newest first. A live-looking session not seen for a lease TTL is reported ``lost``."""
        query = select(sessions).order_by(sessions.c.last_seen_at.desc()).limit(MAX_LIST_LIMIT)
        if vp_id:
            query = query.where(sessions.c.vp_id == vp_id)
        if not include_stopped:
            query = query.where(sessions.c.status != "stopped")
        with self.engine.connect() as conn:
            now = conn.execute(select(self._now())).scalar_one()
            rows = list(conn.execute(query))
        now = _aware(now) or utcnow()
        out = []
        for r in rows:
            m = dict(r._mapping)
            m["started_at"] = _aware(m["started_at"])
            m["last_seen_at"] = _aware(m["last_seen_at"])
            if m["status"] != "stopped" and now - m["last_seen_at"] > self.lease_ttl:
                m["status"] = "lost"
            out.append(SessionInfo(**m))
        return out


def open_store(
    url: str,
    *,
    lease_ttl_seconds: float = 120.0,
    auto_upgrade: bool = False,
    pool_size: int = 10,
    on_events: Callable[[list[MissionEvent]], None] | None = None,
) -> MissionStore:
    """Connect, and refuse an unmigrated database (or upgrade it, for the embedded one)."""
    engine = db.make_engine(url, pool_size=pool_size)
    db.ensure_migrated(engine, auto_upgrade=auto_upgrade)
    return MissionStore(engine, lease_ttl_seconds=lease_ttl_seconds, on_events=on_events)
