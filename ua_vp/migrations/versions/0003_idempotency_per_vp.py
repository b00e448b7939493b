"""Idempotency keys are unique per vp_id, not across the whole table.

A key chosen by one caller for one profile no longer collides with another's key
for another profile (and a 409 no longer points at someone else's mission).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# 0001 made an unnamed UNIQUE constraint; PostgreSQL named it itself, and on SQLite
# batch mode (which copies the table) finds it under this convention.
_SQLITE_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_constraint() -> str:
    return (
        "vp_missions_idempotency_key_key"
        if op.get_bind().dialect.name == "postgresql"
        else "uq_vp_missions_idempotency_key"
    )


def upgrade() -> None:
    with op.batch_alter_table("vp_missions", naming_convention=_SQLITE_NAMING) as batch:
        batch.drop_constraint(_old_constraint(), type_="unique")
    op.create_index("ux_vp_missions_idempotency", "vp_missions", ["vp_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_vp_missions_idempotency", table_name="vp_missions")
    with op.batch_alter_table("vp_missions", naming_convention=_SQLITE_NAMING) as batch:
        batch.create_unique_constraint(_old_constraint(), ["idempotency_key"])
