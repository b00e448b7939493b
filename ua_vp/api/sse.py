"""Following a mission's events as Server-Sent Events.

The store is polled (in a worker thread, so the event loop never waits on the
database) every :data:`POLL_SECONDS`; each event is one SSE message
``id: <event id>`` / ``event: <event_type>`` / ``data: <json>``. The stream ends
after the mission's terminal event, so a client can simply read to the end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from functools import partial

import anyio
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ua_vp.errors import InvalidRequest
from ua_vp.event_cursor import EventCursor
from ua_vp.missions import TERMINAL_EVENTS, MissionEvent
from ua_vp.store import MissionStore

POLL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
"""An idle stream sends a comment this often so proxies do not close it."""
BATCH = 1000


def parse_last_event_id(raw: str | None, after_id: int) -> int:
    """``Last-Event-ID`` (sent by a reconnecting EventSource) wins over ``after_id``."""
    if raw is None or not raw.strip():
        return after_id
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidRequest("Last-Event-ID must be an event id (a non-negative integer)", field="Last-Event-ID")
    return value


def _message(event: MissionEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(id=event.id, event=event.event_type, data=json.dumps(event.to_public()))


async def follow(
    store: MissionStore, mission_id: str, after_id: int, stopping: threading.Event
) -> AsyncIterator[ServerSentEventMessage]:
    cursor = EventCursor(after_id)
    idle = 0.0
    ending = False
    while True:
        fresh, full = await anyio.to_thread.run_sync(partial(cursor.read, store, mission_id, limit=BATCH))
        for event in fresh:
            yield _message(event)
            if event.event_type in TERMINAL_EVENTS:
                return
        if fresh and full:
            continue  # more are waiting: no pause while replaying a long history
        if not fresh:
            if ending:
                return
            # A mission that ended before this stream (its final event at or before
            # Last-Event-ID) sends nothing more: end the stream rather than wait forever.
            # Status and final event commit together, so one more read sees every event.
            mission = await anyio.to_thread.run_sync(store.get, mission_id)
            if mission.status.terminal:
                ending = True
                continue
        await anyio.sleep(POLL_SECONDS)
        if stopping.is_set():
            return  # the client reconnects with Last-Event-ID and misses nothing
        idle = 0.0 if fresh else idle + POLL_SECONDS
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield ServerSentEventMessage(comment="keep-alive")


def event_stream(store: MissionStore, mission_id: str, after_id: int, stopping: threading.Event) -> ServerSentEvent:
    return ServerSentEvent(follow(store, mission_id, after_id, stopping))
