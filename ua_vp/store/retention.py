"""Retention: delete finished missions (and their events) older than a cutoff.

Batched: each batch is one short transaction over at most :data:`BATCH` missions,
picked oldest first through ``ix_vp_missions_finished``. It touches only rows in a
terminal status, which no claim, heartbeat or finalize ever reads or locks (claims
walk the partial index of queued rows with SKIP LOCKED), so a prune of millions of
rows never makes a claim wait on a lock; short transactions also keep SQLite's one
write lock free between batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, literal, select

from ua_vp.errors import InvalidRequest
from ua_vp.missions import TERMINAL, Status
from ua_vp.store.statements import status_in
from ua_vp.store.store import MissionStore
from ua_vp.store.tables import Timestamp, events, missions

BATCH = 1000
PAUSE_SECONDS = 0.01
"""Between batches: other writers (a SQLite worker's finalize) get the lock first."""


@dataclass(frozen=True)
class Pruned:
    missions: int
    events: int
    dry_run: bool = False


def prune(
    store: MissionStore,
    *,
    older_than: timedelta,
    statuses: Iterable[Status] | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
) -> Pruned:
    """Delete the missions in ``statuses`` (default: every terminal one) that finished
    more than ``older_than`` ago, with their events; ``dry_run`` only counts them."""
    chosen = frozenset(statuses or TERMINAL)
    alive = sorted(s.value for s in chosen - TERMINAL)
    if alive:
        raise InvalidRequest(
            f"only finished missions can be pruned; {', '.join(alive)} is not a final status "
            f"(use {', '.join(sorted(s.value for s in TERMINAL))})",
            field="status",
        )
    if older_than < timedelta(0):
        raise InvalidRequest("older_than must not be negative", field="older_than")
    with store.engine.connect() as conn:
        cutoff = conn.execute(select(store.now())).scalar_one() - older_than
    old = (missions.c.finished_at < literal(cutoff, Timestamp)) & status_in(chosen)
    if dry_run:
        with store.engine.connect() as conn:
            n = conn.execute(select(func.count()).where(old)).scalar_one()
            m = conn.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.mission_id.in_(select(missions.c.mission_id).where(old)))
            ).scalar_one()
        return Pruned(int(n), int(m), dry_run=True)
    total_missions = total_events = 0
    while True:
        with store.tx() as conn:
            ids = list(
                conn.execute(
                    select(missions.c.mission_id)
                    .where(old)
                    .order_by(missions.c.finished_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                break
            total_events += conn.execute(delete(events).where(events.c.mission_id.in_(ids))).rowcount
            total_missions += conn.execute(delete(missions).where(missions.c.mission_id.in_(ids))).rowcount
        time.sleep(PAUSE_SECONDS)
    return Pruned(total_missions, total_events)


def parse_age(raw: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` (a plain number is days)."""
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    text = raw.strip().lower()
    unit = text[-1] if text and text[-1] in units else "d"
    number = text[:-1] if text and text[-1] in units else text
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e7 or value != value:
        raise InvalidRequest(
            f"cannot read the age {raw!r}; write a number with a unit, e.g. 30d, 12h, 90m or 45s", field="older_than"
        )
    return timedelta(seconds=value * units[unit])
