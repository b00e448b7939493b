"""Following a mission's events as Server-Sent Events.

The store is polled (in a worker thread, so the event loop never waits on the
database) every :data:`POLL_SECONDS`; each event is one SSE message
``id: <event id>`` / ``event: <event_type>`` / ``data: <json>``. The stream ends
after the mission's terminal event, so a client can simply read to the end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from functools import partial

import anyio
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ua_vp.api.streams import StreamLimits
from ua_vp.errors import InvalidRequest
from ua_vp.missions import FINAL_EVENT, MissionEvent
from ua_vp.store import MissionStore

POLL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
"""An idle stream sends a comment this often so proxies do not close it."""
SETTLE_SECONDS = 2.0
BATCH = 1000
MAX_EVENT_ID = 2**63 - 1
"""Event ids are BIGINT: a larger ``after_id``/``Last-Event-ID`` cannot name an event (400)."""
TERMINAL_EVENTS = frozenset(event.value for event in FINAL_EVENT.values())


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


class _Cursor:
    """Which events a follower has already sent.

    PostgreSQL hands out event ids at INSERT, not at COMMIT: a slower transaction
    can make id 10 visible after id 11 was sent. Reading on from the last id sent
    would skip 10 for good, so each read starts at the newest id sent at least
    :data:`SETTLE_SECONDS` ago and skips the ids sent since.
    """

    def __init__(self, after_id: int) -> None:
        self.settled = after_id
        self.recent: dict[int, float] = {}

    def start(self) -> int:
        now = time.monotonic()
        for event_id, sent_at in list(self.recent.items()):
            if now - sent_at >= SETTLE_SECONDS:
                self.settled = max(self.settled, event_id)
                del self.recent[event_id]
        return self.settled

    def fresh(self, batch: Sequence[MissionEvent]) -> list[MissionEvent]:
        out = [e for e in batch if e.id > self.settled and e.id not in self.recent]
        now = time.monotonic()
        self.recent.update((e.id, now) for e in out)
        return out


def _message(event: MissionEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(id=event.id, event=event.event_type, data=json.dumps(event.to_public()))


async def follow(
    store: MissionStore, mission_id: str, after_id: int, stopping: threading.Event
) -> AsyncIterator[ServerSentEventMessage]:
    cursor = _Cursor(after_id)
    idle = 0.0
    ending = False
    while True:
        batch = await anyio.to_thread.run_sync(partial(store.events, mission_id, after_id=cursor.start(), limit=BATCH))
        fresh = cursor.fresh(batch)
        for event in fresh:
            yield _message(event)
            if event.event_type in TERMINAL_EVENTS:
                return
        if fresh and len(batch) == BATCH:
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


def event_stream(
    store: MissionStore,
    mission_id: str,
    after_id: int,
    stopping: threading.Event,
    limits: StreamLimits,
    client: str,
) -> ServerSentEvent:
    """The stream, counted against the caps (429 ``too_many_streams`` when over one)."""
    return ServerSentEvent(limits.wrap(client, follow(store, mission_id, after_id, stopping)))
