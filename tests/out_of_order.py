"""Event ids that commit out of order (PostgreSQL assigns them at INSERT): shared by
the SSE route's and ``--follow``'s tests of the one event cursor."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from ua_vp.missions import Mission, Status
from ua_vp.store import MissionStore
from ua_vp.store.tables import events


def commit_out_of_order(store: MissionStore, mission: Mission) -> threading.Thread:
    """In a thread: a "slow" progress event takes an id, a "fast" one takes the next id
    and commits first, the slow one commits 0.6 s later, then the mission completes."""
    token = mission.lease_token or ""
    mid = mission.mission_id

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
    return thread
