"""MissionStore: the only code that writes missions, events and sessions.

Every status change is one transaction that also writes its event row, so the
history can never disagree with the row. The statements come from
:mod:`statements`, built from the transition table in :mod:`ua_vp.missions`;
they guard themselves in their WHERE clause (status, lease token), so a racing
or stale writer changes nothing. :mod:`backends` says how each backend commits
the hot-path ones.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, literal, or_, select, update
from sqlalchemy.sql import ColumnElement

from ua_vp.errors import IdempotencyConflict, InvalidRequest, MissionNotFound
from ua_vp.missions import (
    ASK_CANCEL,
    CANCEL_QUEUED,
    PROGRESS,
    REAP,
    RELEASE,
    TERMINAL,
    Heartbeat,
    Mission,
    MissionEvent,
    MissionSpec,
    Status,
    Transition,
)
from ua_vp.redact import redact_data
from ua_vp.store import backends, db, pg_sql, rows, statements
from ua_vp.store.rows import aware as _aware
from ua_vp.store.rows import storable_json, utcnow
from ua_vp.store.statements import status_in
from ua_vp.store.tables import Timestamp, events, missions, sessions

NOTIFY_CHANNEL = pg_sql.NOTIFY_CHANNEL
MAX_LIST_LIMIT = 500
MAX_CLAIM_BATCH = 500
_mission, _event = rows.mission, rows.event

__all__ = ["MissionStore", "open_store", "storable_json", "utcnow"]


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
class Outcome:
    """How a worker ends one mission (see :meth:`MissionStore.finalize_many`)."""

    mission_id: str
    lease_token: str
    status: Status
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Watch:
    """What a worker learns each poll about one of its running missions."""

    lease_held: bool
    cancel_requested: bool


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

    # The status written into the text, not bound: SQLite uses a partial index only for
    # a query whose WHERE matches the index's own literally.
    QUEUED = f"SELECT 1 FROM vp_missions WHERE vp_id = ? AND status = '{Status.QUEUED.value}' LIMIT 1"

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
        self.on_events = on_events
        """Called with the events of each transaction after it committed (observer hooks)."""
        self._hot = backends.hot_path(self)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
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
        self.publish(written)

    def publish(self, written: list[MissionEvent]) -> None:
        if written and self.on_events is not None:
            self.on_events(written)

    # -- the clock ---------------------------------------------------------------------
    def now(self) -> ColumnElement[datetime]:
        # PostgreSQL: the database clock, shared by every host; leases stay
        # comparable whatever the workers' clocks say. SQLite: one machine.
        if self.is_postgres:
            return func.now()
        return literal(utcnow(), Timestamp)

    def later(self) -> ColumnElement[datetime]:
        """When a lease taken now runs out."""
        if self.is_postgres:
            return pg_sql.later(self.lease_ttl.total_seconds())  # type: ignore[no-any-return]
        return literal(utcnow() + self.lease_ttl, Timestamp)

    def _notify(self, conn: Connection, kind: str, vp_id: str, mission_id: str) -> None:
        # Delivered at COMMIT, so a listener never sees a mission it cannot read yet.
        if self.is_postgres:
            conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, f"{kind}:{vp_id}:{mission_id}")))

    def notify_queued(self, vp_id: str, key: str) -> None:
        """Wake one more worker of ``vp_id`` (PostgreSQL; a no-op elsewhere)."""
        if self.is_postgres:
            with self.engine.connect() as conn, conn.begin():
                self._notify(conn, pg_sql.NOTIFY_QUEUED, vp_id, key)

    def write_events(self, conn: Connection, event_rows: Sequence[dict[str, Any]]) -> list[MissionEvent]:
        if not event_rows:
            return []
        # One cached statement run with many parameter sets (SQLAlchemy batches it
        # into a single multi-row INSERT); a literal multi-VALUES insert would be
        # compiled anew on every call.
        stmt = insert(events).values(created_at=self.now()).returning(*events.c, sort_by_parameter_order=True)
        written = [_event(r) for r in conn.execute(stmt, list(event_rows))]
        conn.info["ua_vp_events"].extend(written)
        return written

    # -- enqueue ---------------------------------------------------------------------
    def enqueue(self, spec: MissionSpec) -> Enqueued:
        """Insert a queued mission; an ``idempotency_key`` seen before returns the earlier
        mission for the same request and raises :class:`IdempotencyConflict` otherwise."""
        request_hash = spec.request_hash()
        values = {name: getattr(spec, name, None) for name in statements.ENQUEUE_COLUMNS}
        values.update(mission_id=f"vpm_{uuid.uuid4().hex}", request_hash=request_hash)
        mission = self._hot.enqueue(values)
        if mission is not None:
            return Enqueued(mission, created=True)
        return self._replay(spec, request_hash)

    def _replay(self, spec: MissionSpec, request_hash: str) -> Enqueued:
        """The idempotency key was taken for this vp_id: same request -> that mission, else a
        conflict. The conflict names no mission: the key may be another caller's."""
        query = select(missions).where(
            missions.c.vp_id == spec.vp_id, missions.c.idempotency_key == spec.idempotency_key
        )
        with self.engine.connect() as conn:
            existing = _mission(conn.execute(query).one())
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(
                f"idempotency_key {spec.idempotency_key!r} was already used for a different {spec.vp_id} "
                "request; use a new key for a new request",
                vp_id=spec.vp_id,
            )
        return Enqueued(existing, created=False)

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
        """Take up to ``limit`` queued missions of ``vp_id`` in one statement: lower
        priority first, then oldest (see :func:`statements.claim`)."""
        if not 1 <= limit <= MAX_CLAIM_BATCH:
            raise InvalidRequest(f"claim limit must be from 1 to {MAX_CLAIM_BATCH}, got {limit}")
        return self._hot.claim(vp_id, worker_id, limit)

    # -- heartbeat ---------------------------------------------------------------------
    def heartbeat(self, mission_id: str, lease_token: str) -> Heartbeat:
        """Extend the lease. ``lease_held=False`` means: stop, and do not finalize."""
        return self.heartbeat_many([(mission_id, lease_token)])[mission_id]

    def heartbeat_many(self, leases: Sequence[tuple[str, str]]) -> dict[str, Heartbeat]:
        """Extend many leases in one statement (one per worker, not per mission)."""
        if not leases:
            return {}
        held = self._hot.heartbeat(leases)
        return {
            mission_id: Heartbeat(lease_held=mission_id in held, cancel_requested=held.get(mission_id) is not None)
            for mission_id, _ in leases
        }

    def watch(self, leases: Sequence[tuple[str, str]]) -> dict[str, Watch]:
        """A cheap read, each poll, of the worker's running missions: has a cancel been
        asked, is the lease still ours? Cancels then reach a running mission within a
        poll interval on every backend, with or without LISTEN."""
        if not leases:
            return {}
        tokens = dict(leases)
        with self.engine.connect() as conn:
            found = {r.mission_id: r for r in conn.execute(statements.watch(list(tokens)))}
        out = {}
        for mission_id, token in tokens.items():
            r = found.get(mission_id)
            held = r is not None and r.lease_token == token and r.status in {s.value for s in PROGRESS.source}
            out[mission_id] = Watch(
                lease_held=held, cancel_requested=r is not None and r.cancel_requested_at is not None
            )
        return out

    # -- cancel ------------------------------------------------------------------------
    def request_cancel(self, mission_id: str, *, reason: str = "requested") -> CancelOutcome:
        """Queued: cancelled at once. Running: flagged for its worker (and NOTIFY).
        Terminal or already flagged: returned unchanged."""
        error = {"code": "cancelled", "message": f"cancelled before it started ({reason})"}
        with self.tx() as conn:
            row = conn.execute(
                statements.cancel(now=self.now()), statements.params(mission_id=mission_id, queued_error=error)
            ).first()
            if row is None:
                existing = conn.execute(select(missions).where(missions.c.mission_id == mission_id)).first()
                if existing is None:
                    raise MissionNotFound(f"no mission with id {mission_id!r}", mission_id=mission_id)
                return CancelOutcome(_mission(existing), changed=False)
            mission = _mission(row)
            if mission.status in ASK_CANCEL.outcomes:
                self.write_events(conn, [rows.event_row(ASK_CANCEL, mission, reason=reason)])
                self._notify(conn, pg_sql.NOTIFY_CANCEL, mission.vp_id, mission.mission_id)
                return CancelOutcome(mission, changed=True)
            # Asked, then done at once: both events, in that order.
            asked = rows.event_row(ASK_CANCEL, mission, status=Status.RUNNING, reason=reason)
            self.write_events(conn, [asked, rows.event_row(CANCEL_QUEUED, mission, reason=reason, was="queued")])
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
        (done,) = self.finalize_many([Outcome(mission_id, lease_token, status, result, error)])
        return done

    def finalize_many(self, outcomes: Sequence[Outcome]) -> list[Mission | None]:
        """End many running missions in one statement, each fenced by its own lease
        token; answers in the same order (None where the lease was lost)."""
        for o in outcomes:
            if o.status not in TERMINAL:
                raise InvalidRequest(f"finalize needs a terminal status, got {o.status.value!r}")
        if not outcomes:
            return []
        params = [
            {
                "mission_id": o.mission_id,
                "lease_token": o.lease_token,
                "status": o.status.value,
                "result": storable_json(o.result),
                # Errors quote what runtimes and agents said, which may include a credential.
                "error": redact_data(storable_json(o.error)),
            }
            for o in outcomes
        ]
        done = {m.mission_id: m for m in self._hot.finalize(params)}
        return [done.get(o.mission_id) for o in outcomes]

    def release(self, mission_id: str, lease_token: str, *, reason: str) -> Mission | None:
        """Give a running mission back now (a draining worker's grace ran out) instead of
        making it wait for its lease to expire. Fenced like finalize; ends as a reaped
        mission would: cancelled if cancel was asked, failed if out of attempts."""
        mine = and_(missions.c.mission_id == mission_id, missions.c.lease_token == lease_token)
        with self.tx() as conn:
            out = self._give_back(conn, mine, RELEASE, reason=reason, why=f"released by its worker ({reason})")
        return out[0] if out else None

    def add_progress(self, mission_id: str, lease_token: str, payloads: Iterable[dict[str, Any]]) -> bool:
        """Record progress events while the lease is held; False (nothing written) otherwise."""
        payloads = [redact_data(storable_json(p)) for p in payloads]
        if not payloads:
            return self.watch([(mission_id, lease_token)])[mission_id].lease_held
        return self._hot.progress(mission_id, lease_token, payloads)

    # -- reap ----------------------------------------------------------------------------
    def reap(self, limit: int = 100) -> list[Mission]:
        """Recover running missions whose lease expired: requeue them while attempts
        remain, fail them (``lease_expired``) when not, cancel them if cancel was asked.

        Safe from every process at once: SKIP LOCKED lets concurrent reapers split
        the work, and the outer WHERE re-checks the expiry so a heartbeat that won
        the race keeps its mission.
        """
        expired = and_(status_in(REAP.source), missions.c.lease_expires_at < self.now())
        with self.tx() as conn:
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
            return self._give_back(conn, chosen, REAP, reason="lease_expired", why="the worker's lease expired")

    def _give_back(
        self, conn: Connection, chosen: ColumnElement[bool], transition: Transition, *, reason: str, why: str
    ) -> list[Mission]:
        """Take the ``chosen`` running missions away from their worker (see
        :func:`statements.give_back`); writes the errors and events."""
        out: list[Mission] = []
        event_rows = []
        for m in [_mission(r) for r in conn.execute(statements.give_back(chosen, transition, now=self.now()))]:
            if m.status is Status.QUEUED:
                event_rows.append(rows.event_row(transition, m, reason=reason))
                self._notify(conn, pg_sql.NOTIFY_QUEUED, m.vp_id, m.mission_id)
                out.append(m)
                continue
            if m.status is Status.CANCELLED:
                error = {"code": "cancelled", "message": f"cancelled; {why} before it finished"}
            else:
                error = {"code": reason, "message": f"{why} on attempt {m.attempt} of {m.max_attempts}"}
            final = conn.execute(
                update(missions).where(missions.c.mission_id == m.mission_id).values(error=error).returning(*missions.c)
            ).one()
            m = _mission(final)
            out.append(m)
            event_rows.append(rows.event_row(transition, m, reason=reason))
        self.write_events(conn, event_rows)
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

    def newest_event_id(self) -> int:
        """The largest event id so far (0 when none): a cheap "anything new?"."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(events.c.id))).scalar() or 0)

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
        with self.tx() as conn:
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
                    started_at=self.now(),
                    last_seen_at=self.now(),
                    sandbox=sandbox,
                )
            )

    def touch_session(self, worker_id: str, *, status: str, active_missions: int) -> list[str]:
        """Record the worker's state; answers, in the same transaction, the live workers of
        its vp_id that had a free slot when last seen (by worker_id), which the workers
        use to pick which one a NOTIFY wakes."""
        with self.tx() as conn:
            vp_id = conn.execute(
                update(sessions)
                .where(sessions.c.worker_id == worker_id)
                .values(status=status, active_missions=active_missions, last_seen_at=self.now())
                .returning(sessions.c.vp_id)
            ).scalar()
            if vp_id is None:
                return []
            since = self.now() - self.lease_ttl if self.is_postgres else literal(utcnow() - self.lease_ttl, Timestamp)
            return list(
                conn.execute(
                    select(sessions.c.worker_id)
                    .where(
                        sessions.c.vp_id == vp_id,
                        sessions.c.status.in_(("idle", "busy")),
                        sessions.c.active_missions < sessions.c.capacity,
                        sessions.c.last_seen_at > since,
                    )
                    .order_by(sessions.c.worker_id)
                ).scalars()
            )

    def list_sessions(self, *, vp_id: str | None = None, include_stopped: bool = True) -> list[SessionInfo]:
        """Newest first. A live-looking session not seen for a lease TTL is reported ``lost``."""
        query = select(sessions).order_by(sessions.c.last_seen_at.desc()).limit(MAX_LIST_LIMIT)
        if vp_id:
            query = query.where(sessions.c.vp_id == vp_id)
        if not include_stopped:
            query = query.where(sessions.c.status != "stopped")
        with self.engine.connect() as conn:
            now = conn.execute(select(self.now())).scalar_one()
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
