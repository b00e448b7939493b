"""Reading a mission's events as they are written, without skipping any: the one
cursor behind the SSE route and ``ua-vp dispatch --follow``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ua_vp.missions import MissionEvent
from ua_vp.store import MissionStore

SETTLE_SECONDS = 2.0
"""How long an event id may stay invisible after a larger one was read (a slower
transaction still committing)."""


class EventCursor:
    """Which events a follower has already seen.

    PostgreSQL hands out event ids at INSERT, not at COMMIT: a slower transaction
    can make id 10 visible after id 11 was read. Reading on from the last id read
    would skip 10 for good, so each read starts at the newest id read at least
    :data:`SETTLE_SECONDS` ago and leaves out the ids read since.
    """

    def __init__(self, after_id: int = 0, *, ids_in_commit_order: bool = False) -> None:
        self.settled = after_id
        self.recent: dict[int, float] = {}
        self.settle_seconds = 0.0 if ids_in_commit_order else SETTLE_SECONDS
        """SQLite has one writer at a time: its ids always commit in order."""

    @property
    def unsettled(self) -> bool:
        """Ids were read lately: a smaller one may still commit."""
        return bool(self.recent)

    def start(self) -> int:
        """The id the next read starts after."""
        now = time.monotonic()
        for event_id, seen_at in list(self.recent.items()):
            if now - seen_at >= self.settle_seconds:
                self.settled = max(self.settled, event_id)
                del self.recent[event_id]
        return self.settled

    def fresh(self, batch: Sequence[MissionEvent]) -> list[MissionEvent]:
        """The events of ``batch`` not seen before; they count as seen from now on."""
        out = [e for e in batch if e.id > self.settled and e.id not in self.recent]
        now = time.monotonic()
        self.recent.update((e.id, now) for e in out)
        return out

    def read(self, store: MissionStore, mission_id: str, *, limit: int = 1000) -> tuple[list[MissionEvent], bool]:
        """New events, and whether the read was full (more may be waiting)."""
        batch = store.events(mission_id, after_id=self.start(), limit=limit)
        fresh = self.fresh(batch)
        self.start()  # settles at once what needs no settling
        return fresh, len(batch) == limit

    @classmethod
    def for_store(cls, store: MissionStore, after_id: int = 0) -> EventCursor:
        return cls(after_id, ids_in_commit_order=not store.is_postgres)
