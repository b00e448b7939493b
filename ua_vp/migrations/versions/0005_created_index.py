"""ix_vp_missions_created: the unfiltered newest-first listing pages through an index
instead of sorting every mission (bench/RESULTS-dashboard.md, 100k missions).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_vp_missions_created", "vp_missions", ["created_at", "mission_id"])


def downgrade() -> None:
    op.drop_index("ix_vp_missions_created", table_name="vp_missions")
