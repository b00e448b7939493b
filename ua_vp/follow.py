"""Waiting on a mission from the outside (``ua-vp dispatch --wait``)."""

from __future__ import annotations

import time

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from ua_vp.errors import UaVpError
from ua_vp.missions import Mission
from ua_vp.store import MissionStore


class WaitTimedOut(UaVpError):
    code = "wait_timed_out"
    http_status = 408


def wait_for_end(store: MissionStore, mission_id: str, *, timeout: float) -> Mission:
    """Poll until the mission is terminal (backing off to 1 s between reads)."""
    started = time.monotonic()
    poll = Retrying(
        retry=retry_if_result(lambda m: not m.status.terminal),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        stop=stop_after_delay(timeout),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    mission: Mission = poll(store.get, mission_id)
    if not mission.status.terminal:
        raise WaitTimedOut(
            f"mission {mission_id} is still {mission.status.value} after {time.monotonic() - started:.0f} s; "
            "is a worker (or `ua-vp serve`) running for its vp_id?",
            mission_id=mission_id,
        )
    return mission
