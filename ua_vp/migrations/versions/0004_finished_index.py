"""ix_vp_missions_finished: retention (``ua-vp db prune``) finds old finished missions
by finished_at without scanning the table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("finished_at IS NOT NULL")
    op.create_index(
        "ix_vp_missions_finished", "vp_missions", ["finished_at"], postgresql_where=where, sqlite_where=where
    )


def downgrade() -> None:
    op.drop_index("ix_vp_missions_finished", table_name="vp_missions")
