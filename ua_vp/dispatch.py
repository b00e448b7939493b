"""The gateway: validate -> guard -> enqueue -> route to a lane.

Every dispatch writes the same mission row and events whichever lane runs it.
With ``UA_VP_EXTERNAL_DISPATCH_ENABLED=1`` and ``UA_VP_DISPATCH_MODE=db_pull``
missions wait for external ``ua-vp worker`` processes; otherwise the server's
in-process lane (the same worker loop, inside ``ua-vp serve``) runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ua_vp.config import Settings
from ua_vp.missions import MissionSpec
from ua_vp.plugins import Registry
from ua_vp.store import CancelOutcome, Enqueued, MissionStore

log = structlog.get_logger(__name__)


def lane_for(settings: Settings) -> str:
    return "external" if settings.external_dispatch else "in_process"


@dataclass
class Gateway:
    settings: Settings
    store: MissionStore
    registry: Registry
    wake: list[Callable[[str], None]] = field(default_factory=list)
    """Called with the vp_id after a new mission is committed (the in-process lane's doorbell)."""

    def dispatch(self, **request: Any) -> Enqueued:
        """Validate and guard the request, then write it. Nothing is written on any error."""
        request.setdefault("max_attempts", self.settings.max_attempts)
        spec = MissionSpec.create(**request, lane=lane_for(self.settings))
        self.registry.check_mission(spec, "dispatch")
        enqueued = self.store.enqueue(spec)
        mission = enqueued.mission
        if enqueued.created:
            log.info("mission_dispatched", mission_id=mission.mission_id, vp_id=mission.vp_id, lane=mission.lane)
            for ring in self.wake:
                ring(mission.vp_id)
        return enqueued

    def cancel(self, mission_id: str) -> CancelOutcome:
        outcome = self.store.request_cancel(mission_id)
        if outcome.changed:
            log.info("mission_cancel_requested", mission_id=mission_id, status=outcome.mission.status.value)
        return outcome
