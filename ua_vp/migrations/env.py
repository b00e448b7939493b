"""Alembic environment: ua-vp runs migrations programmatically (``ua-vp db upgrade``)
and hands its own connection in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from ua_vp.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
