"""The one event cursor (SSE route and ``--follow``): no event skipped when ids commit out of order."""

from __future__ import annotations

import pytest

from tests.out_of_order import commit_out_of_order
from ua_vp.follow import follow_local
from ua_vp.missions import MissionSpec
from ua_vp.store import open_store


@pytest.mark.postgres
def test_follow_sends_an_event_committed_after_a_larger_id(pg_url: str) -> None:
    """PostgreSQL assigns ids at INSERT: a transaction holding id N can commit after
    N+1 was already read. ``dispatch --follow`` once read on from N+1 and lost N."""
    store = open_store(pg_url)
    mid = store.enqueue(MissionSpec.create(vp_id="vp.general.primary", objective="race")).mission.mission_id
    (mission,) = store.claim("vp.general.primary", "w-race")
    thread = commit_out_of_order(store, mission)
    followed = list(follow_local(store, mid, timeout=20))
    thread.join(5)
    kinds = [e["payload"].get("kind") for e in followed if e["event_type"] == "vp.mission.progress"]
    assert kinds == ["fast", "slow"]
    assert sorted(e["id"] for e in followed) == [e.id for e in store.events(mid)]
    store.engine.dispose()
