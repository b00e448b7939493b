"""The one event cursor (SSE route and ``--follow``): no event skipped when ids commit out of order."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from ua_vp.follow import follow_local
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import open_store
from ua_vp.store.tables import events


@pytest.mark.postgres
def test_follow_sends_an_event_committed_after_a_larger_id(pg_url: str) -> None:
    """PostgreSQL assigns ids at INSERT: a transaction holding id N can commit after
    N+1 was already read. ``dispatch --follow`` once read on from N+1 and lost N."""
    store = open_store(pg_url)
    mid = store.enqueue(MissionSpec.create(vp_id="vp.general.primary", objective="race")).mission.mission_id
    (mission,) = store.claim("vp.general.primary", "w-race")
    token = mission.lease_token or ""

    def race() -> None:
        with store.engine.connect() as slow:
            tx = slow.begin()
            slow.execute(
                events.insert().values(
                    mission_id=mid, vp_id=mission.vp_id, event_type="vp.mission.progress",
                    payload={"kind": "slow"}, created_at=datetime.now(UTC),
                )
            )  # fmt: skip
            store.add_progress(mid, token, [{"kind": "fast"}])  # a larger id, committed first
            time.sleep(0.6)  # the follower reads "fast" meanwhile
            tx.commit()
        time.sleep(0.6)
        store.finalize(mid, token, Status.COMPLETED, result={"summary": "done"})

    thread = threading.Thread(target=race, daemon=True)
    thread.start()
    followed = list(follow_local(store, mid, timeout=20))
    thread.join(5)
    kinds = [e["payload"].get("kind") for e in followed if e["event_type"] == "vp.mission.progress"]
    assert kinds == ["fast", "slow"]
    assert sorted(e["id"] for e in followed) == [e.id for e in store.events(mid)]
    store.engine.dispose()
