"""LISTEN on the missions channel, forever, on a dedicated connection.

Its own connection: psycopg's ``notifies()`` holds the connection lock while it
waits, so sharing it would stall every other statement. A dead connection is
noticed (keepalives) and reopened with backoff; polling covers the gap, so a
caller must never depend on a notification arriving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Engine
from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

from ua_vp.store.pg_sql import NOTIFY_CHANNEL


async def listen_forever(
    engine: Engine, on_notify: Callable[[str], None], *, on_connected: Callable[[], None], log: Any
) -> None:
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda e: isinstance(e, psycopg.Error)),
        before_sleep=lambda s: log.warning("listen_reconnecting", error=repr(s.outcome and s.outcome.exception())),
        wait=wait_random_exponential(multiplier=0.2, max=5.0),
    ):
        with attempt:
            # Keepalives: a half-open connection (a partition, a dead host) is
            # noticed within about a minute instead of blocking notifies() forever.
            async with await psycopg.AsyncConnection.connect(
                url,
                autocommit=True,
                connect_timeout=10,
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            ) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                # Anything that happened while we were not listening is caught now.
                on_connected()
                async for note in conn.notifies():
                    on_notify(note.payload)


def parse(payload: str) -> tuple[str, str, str]:
    """``kind:vp_id:mission_id`` (a vp_id may itself hold colons)."""
    kind, _, rest = payload.partition(":")
    vp_id, _, mission_id = rest.rpartition(":")
    return kind, vp_id, mission_id
