"""``/healthz`` (the process answers) and ``/readyz`` (its database is reachable and migrated)."""

from __future__ import annotations

import anyio
from litestar import Controller, get

from ua_vp.api.deps import Api, error_docs
from ua_vp.api.schemas import Health, Ready
from ua_vp.errors import DatabaseNotMigrated, DatabaseUnavailable
from ua_vp.store import db

READY_TIMEOUT_SECONDS = 5.0
"""A database that takes longer than this to answer is as good as down for a probe."""


class HealthController(Controller):
    path = "/"
    tags = ["health"]

    @get("/healthz", operation_id="healthz", summary="The process is up")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        operation_id="readyz",
        summary="The database is reachable and migrated",
        responses=error_docs([503]),
    )
    async def readyz(self, api: Api) -> Ready:
        engine = api.store.engine
        try:
            with anyio.fail_after(READY_TIMEOUT_SECONDS):
                # abandon_on_cancel: a hung connect must not hold the probe past its timeout.
                current = await anyio.to_thread.run_sync(db.current_revision, engine, abandon_on_cancel=True)
        except TimeoutError:
            raise DatabaseUnavailable(f"the database did not answer within {READY_TIMEOUT_SECONDS:.0f} s") from None
        head = db.head_revision()
        if current != head:
            raise DatabaseNotMigrated(
                f"the database is at schema revision {current or 'none'}, not {head}; run `ua-vp db upgrade`",
                current=current,
                head=head,
            )
        return Ready(status="ready", database=engine.dialect.name, revision=head)
