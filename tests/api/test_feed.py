"""The server's change feed: many event streams share one watcher instead of each
polling the events table."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import event

from ua_vp.api.feed import ChangeFeed
from ua_vp.api.sse import follow
from ua_vp.missions import MissionSpec, Status
from ua_vp.store import MissionStore

STREAMS = 8
IDLE_SECONDS = 4.0


def test_idle_streams_share_one_watcher_and_all_hear_a_change(store: MissionStore) -> None:
    m = store.enqueue(MissionSpec.create(vp_id="vp.general.primary", objective="watched")).mission
    (running,) = store.claim(m.vp_id, "w1")
    token = running.lease_token or ""
    reads: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "vp_mission_events" in statement:
            reads.append(statement)

    async def scenario() -> list[list[str]]:
        feed = ChangeFeed(store, listen=False)
        store.on_events = lambda _written: feed.ring()
        await feed.start()
        stopping = threading.Event()

        async def one_stream() -> list[str]:
            seen = []
            async for message in follow(store, feed, m.mission_id, 0, stopping):
                if message.event:
                    seen.append(message.event)
            return seen

        tasks = [asyncio.create_task(one_stream()) for _ in range(STREAMS)]
        await asyncio.sleep(IDLE_SECONDS)
        idle_reads = len(reads)
        await asyncio.to_thread(store.add_progress, m.mission_id, token, [{"kind": "step"}])
        await asyncio.to_thread(store.finalize, m.mission_id, token, Status.COMPLETED, result={})
        streamed = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await feed.stop()
        # Each stream read its history (and on PostgreSQL re-read a few times while its
        # ids settled); beyond that, one shared poll. Each stream polling on its own,
        # as before the feed: 8 streams x 5 reads/s x 4 s = 160.
        assert idle_reads < STREAMS * 5 * IDLE_SECONDS / 2, f"{idle_reads} reads while idle"
        return streamed

    streamed = asyncio.run(scenario())
    assert all(kinds[-2:] == ["vp.mission.progress", "vp.mission.completed"] for kinds in streamed)


def test_the_server_applies_retention_days_on_its_own(make_client: Any, store: MissionStore) -> None:
    import time

    m = store.enqueue(MissionSpec.create(vp_id="vp.general.primary", objective="old news")).mission
    (running,) = store.claim(m.vp_id, "w1")
    store.finalize(m.mission_id, running.lease_token or "", Status.COMPLETED, result={})
    kept = store.enqueue(MissionSpec.create(vp_id="vp.general.primary", objective="still queued")).mission
    time.sleep(0.3)

    make_client(retention_days=0.1 / 86_400)  # 0.1 s; pruned at start-up, then hourly

    deadline = time.monotonic() + 10
    while store.list_missions(limit=10) != [store.get(kept.mission_id)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [x.mission_id for x in store.list_missions(limit=10)] == [kept.mission_id]
    assert store.events(m.mission_id) == []
