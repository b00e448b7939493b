"""Following a mission's events as Server-Sent Events.

A stream reads the store (in a worker thread, so the event loop never waits on the
database) when the server's :class:`~ua_vp.api.feed.ChangeFeed` says something
changed, and while recent event ids may still have gaps (see
:class:`~ua_vp.event_cursor.EventCursor`) every :data:`SETTLE_POLL_SECONDS`; each event is one SSE message
``id: <event id>`` / ``event: <event_type>`` / ``data: <json>``. The stream ends
after the mission's terminal event, so a client can simply read to the end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from functools import partial

import anyio
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ua_vp.api.feed import ChangeFeed
from ua_vp.api.streams import StreamLimits
from ua_vp.errors import InvalidRequest
from ua_vp.event_cursor import EventCursor
from ua_vp.missions import TERMINAL_EVENTS, MissionEvent
from ua_vp.store import MissionStore

SETTLE_POLL_SECONDS = 0.5
"""How often a stream re-reads while ids it sent may still have gaps (PostgreSQL)."""
KEEPALIVE_SECONDS = 15.0
"""An idle stream sends a comment this often so proxies do not close it."""
BATCH = 1000
MAX_EVENT_ID = 2**63 - 1
"""Event ids are BIGINT: a larger ``after_id``/``Last-Event-ID`` cannot name an event (400)."""


def parse_last_event_id(raw: str | None, after_id: int) -> int:
    """``Last-Event-ID`` (sent by a reconnecting EventSource) wins over ``after_id``."""
    if raw is None or not raw.strip():
        return after_id
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_EVENT_ID:
        raise InvalidRequest(
            f"Last-Event-ID must be an event id (an integer from 0 to {MAX_EVENT_ID})", field="Last-Event-ID"
        )
    return value


def _message(event: MissionEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(id=event.id, event=event.event_type, data=json.dumps(event.to_public()))


async def follow(
    store: MissionStore, feed: ChangeFeed, mission_id: str, after_id: int, stopping: threading.Event
) -> AsyncIterator[ServerSentEventMessage]:
    cursor = EventCursor.for_store(store, after_id)
    ending = False
    last_sent = time.monotonic()
    while True:
        seen = feed.version  # taken before the read: a change during it is not lost
        fresh, full = await anyio.to_thread.run_sync(partial(cursor.read, store, mission_id, limit=BATCH))
        for event in fresh:
            yield _message(event)
            if event.event_type in TERMINAL_EVENTS:
                return
        if fresh:
            last_sent = time.monotonic()
            if full:
                continue  # more are waiting: no pause while replaying a long history
        else:
            if ending:
                return
            # A mission that ended before this stream (its final event at or before
            # Last-Event-ID) sends nothing more: end the stream rather than wait forever.
            # Status and final event commit together, so one more read sees every event.
            mission = await anyio.to_thread.run_sync(store.get, mission_id)
            if mission.status.terminal:
                ending = True
                continue
        if stopping.is_set():
            return  # the client reconnects with Last-Event-ID and misses nothing
        # Ids read lately may still have gaps that commit later without ringing anything.
        idle = time.monotonic() - last_sent
        timeout = SETTLE_POLL_SECONDS if cursor.unsettled else max(0.05, KEEPALIVE_SECONDS - idle)
        await feed.wait_for_change(seen, timeout)
        if stopping.is_set():
            return
        if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ServerSentEventMessage(comment="keep-alive")


def event_stream(
    store: MissionStore,
    feed: ChangeFeed,
    mission_id: str,
    after_id: int,
    stopping: threading.Event,
    limits: StreamLimits,
    client: str,
) -> ServerSentEvent:
    """The stream, counted against the caps (429 ``too_many_streams`` when over one)."""
    return ServerSentEvent(limits.wrap(client, follow(store, feed, mission_id, after_id, stopping)))
