"""Initial schema: vp_missions, vp_mission_events, vp_sessions.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vp_missions",
        sa.Column("mission_id", sa.String(64), primary_key=True),
        sa.Column("vp_id", sa.String(200), nullable=False),
        sa.Column("mission_type", sa.String(200), nullable=False),
        sa.Column("objective", sa.Text, nullable=False),
        sa.Column("constraints", Json, nullable=False),
        sa.Column("budget", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(200)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", Timestamp),
        sa.Column("cancel_requested_at", Timestamp),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("source_session_id", sa.String(200)),
        sa.Column("source_turn_id", sa.String(200)),
        sa.Column("reply_mode", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(200)),
        sa.Column("result", Json),
        sa.Column("error", Json),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp),
        sa.Column("finished_at", Timestamp),
    )
    op.create_index(
        "ix_vp_missions_queue",
        "vp_missions",
        ["vp_id", "priority", "created_at"],
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_vp_missions_leases",
        "vp_missions",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.create_index("ix_vp_missions_vp_created", "vp_missions", ["vp_id", "created_at"])
    op.create_table(
        "vp_mission_events",
        sa.Column("id", EventId, primary_key=True, autoincrement=True),
        sa.Column(
            "mission_id",
            sa.String(64),
            sa.ForeignKey("vp_missions.mission_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("vp_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_vp_mission_events_mission", "vp_mission_events", ["mission_id", "id"])
    op.create_index("ix_vp_mission_events_vp", "vp_mission_events", ["vp_id", "id"])
    op.create_table(
        "vp_sessions",
        sa.Column("worker_id", sa.String(200), primary_key=True),
        sa.Column("vp_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("active_missions", sa.Integer, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("last_seen_at", Timestamp, nullable=False),
    )
    op.create_index("ix_vp_sessions_vp", "vp_sessions", ["vp_id", "last_seen_at"])


def downgrade() -> None:
    op.drop_table("vp_sessions")
    op.drop_table("vp_mission_events")
    op.drop_table("vp_missions")
