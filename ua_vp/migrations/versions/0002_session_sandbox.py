"""vp_sessions.sandbox: which sandbox backend a worker runs its agents in.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vp_sessions") as batch:
        batch.add_column(sa.Column("sandbox", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("vp_sessions") as batch:
        batch.drop_column("sandbox")
