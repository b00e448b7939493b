"""The three tables. Alembic migrations create them; a test compares the two."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ua_vp.missions import Status

metadata = MetaData()
# Literal in the index predicate: the claim's status test must match it as text.
_QUEUED = text(f"status = '{Status.QUEUED.value}'")
_RUNNING = text(f"status = '{Status.RUNNING.value}'")

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)

missions = Table(
    "vp_missions",
    metadata,
    Column("mission_id", String(64), primary_key=True),
    Column("vp_id", String(200), nullable=False),
    Column("mission_type", String(200), nullable=False),
    Column("objective", Text, nullable=False),
    Column("constraints", Json, nullable=False),
    Column("budget", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("lane", String(16), nullable=False),
    Column("worker_id", String(200)),
    Column("lease_token", String(64)),
    Column("lease_expires_at", Timestamp),
    Column("cancel_requested_at", Timestamp),
    Column("idempotency_key", String(200)),
    Column("request_hash", String(64)),
    Column("source_session_id", String(200)),
    Column("source_turn_id", String(200)),
    Column("reply_mode", String(16), nullable=False),
    Column("run_id", String(200)),
    Column("result", Json),
    Column("error", Json),
    Column("created_at", Timestamp, nullable=False),
    Column("started_at", Timestamp),
    Column("finished_at", Timestamp),
    # The claim reads only queued rows in (priority, age) order: a partial index keeps
    # that read proportional to the queue, not to the history of finished missions.
    Index(
        "ix_vp_missions_queue",
        "vp_id",
        "priority",
        "created_at",
        postgresql_where=_QUEUED,
        sqlite_where=_QUEUED,
    ),
    # The reaper reads only running rows by lease expiry.
    Index(
        "ix_vp_missions_leases",
        "lease_expires_at",
        postgresql_where=_RUNNING,
        sqlite_where=_RUNNING,
    ),
    # Retention: old finished missions, oldest first (ua-vp db prune).
    Index(
        "ix_vp_missions_finished",
        "finished_at",
        postgresql_where=text("finished_at IS NOT NULL"),
        sqlite_where=text("finished_at IS NOT NULL"),
    ),
    # Idempotency keys are per vp_id: one caller's key for one profile is no other's.
    Index("ux_vp_missions_idempotency", "vp_id", "idempotency_key", unique=True),
    # Listings and metrics: newest first per vp_id.
    Index("ix_vp_missions_vp_created", "vp_id", "created_at"),
    # The unfiltered listing (the dashboard's first page, ``ua-vp missions``) in its exact
    # order, ties by id: read backwards, a page costs its rows, not a sort of the whole table.
    Index("ix_vp_missions_created", "created_at", "mission_id"),
)

events = Table(
    "vp_mission_events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("mission_id", String(64), ForeignKey("vp_missions.mission_id", ondelete="CASCADE"), nullable=False),
    Column("vp_id", String(200), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_vp_mission_events_mission", "mission_id", "id"),
    Index("ix_vp_mission_events_vp", "vp_id", "id"),
)

sessions = Table(
    "vp_sessions",
    metadata,
    Column("worker_id", String(200), primary_key=True),
    Column("vp_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("active_missions", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Column("sandbox", String(32)),
    Index("ix_vp_sessions_vp", "vp_id", "last_seen_at"),
)
