"""The server's change feed: ONE watcher per server process tells every event
stream when something may have changed, instead of each stream polling.

What rings it:
- this process's own commits (the store's ``on_events`` hook: dispatches, cancels,
  the in-process lane) — the doorbell, on every backend;
- on PostgreSQL, one LISTEN connection (enqueues, cancel requests, from anywhere);
- one shared poll of the newest event id, only while a stream is waiting, for what
  other processes write without a NOTIFY (an external worker's progress and results).

A stream calls :meth:`ChangeFeed.wait_for_change` with the version it last saw; a
cap on streams (per client, in total) can wrap that call without knowing the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import anyio
import structlog

from ua_vp.store import MissionStore
from ua_vp.store.listen import listen_forever

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.2
"""The shared poll's period: what an event written by another process may wait."""


@dataclass
class ChangeFeed:
    store: MissionStore
    listen: bool = True
    version: int = 0
    """Grows by one on every ring; streams compare it with what they saw."""
    _changed: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _waiting: int = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._poll(), name="change-feed-poll"))
        if self.listen and self.store.is_postgres:
            self._tasks.append(asyncio.create_task(self._listen(), name="change-feed-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._bump()  # waiting streams look at the server's stopping flag now
        self._loop = None

    def ring(self) -> None:
        """Something changed; safe from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_for_change(self, after: int, timeout: float) -> int:
        """The version, once it moved past ``after`` or ``timeout`` passed."""
        if self.version != after:
            return self.version
        if self._changed is None:  # not started (no lifespan): plain polling
            await anyio.sleep(min(timeout, POLL_SECONDS))
            return self.version
        changed = self._changed
        self._waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        finally:
            self._waiting -= 1
        return self.version

    async def _poll(self) -> None:
        newest: int | None = None
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if not self._waiting:
                newest = None  # nobody listens: no query
                continue
            try:
                now = await anyio.to_thread.run_sync(self.store.newest_event_id)
            except Exception as exc:  # the database is away: streams wait, the poll goes on
                log.warning("change_feed_poll_failed", error=repr(exc)[:200])
                continue
            if now != newest:
                newest = now
                self._bump()

    async def _listen(self) -> None:
        await listen_forever(self.store.engine, lambda _payload: self._bump(), on_connected=self._bump, log=log)
