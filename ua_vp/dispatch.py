"""The gateway: validate -> guard -> enqueue -> route to a lane.

Every dispatch writes the same mission row and events whichever lane runs it.
With ``UA_VP_EXTERNAL_DISPATCH_ENABLED=1`` and ``UA_VP_DISPATCH_MODE=db_pull``
missions wait for external ``ua-vp worker`` processes; otherwise the server's
in-process lane (the same worker loop, inside ``ua-vp serve``) runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from ua_vp.config import Settings
from ua_vp.missions import MissionSpec
from ua_vp.plugins import Registry
from ua_vp.store import CancelOutcome, Enqueued, MissionStore

log = structlog.get_logger(__name__)


def lane_for(settings: Settings) -> str:
    return "external" if settings.external_dispatch else "in_process"


class Doorbell(Protocol):
    """Told about committed changes in this process (the in-process lane), so it need
    not wait for its next poll. Called from whichever thread ran the dispatch."""

    def wake(self, vp_id: str) -> None: ...

    def cancel(self, vp_id: str, mission_id: str) -> None: ...


@dataclass
class Gateway:
    settings: Settings
    store: MissionStore
    registry: Registry
    doorbells: list[Doorbell] = field(default_factory=list)

    def dispatch(self, **request: Any) -> Enqueued:
        """Validate and guard the request, then write it. Nothing is written on any error."""
        request.setdefault("max_attempts", self.settings.max_attempts)
        spec = MissionSpec.create(**request, lane=lane_for(self.settings))
        self.registry.check_mission(spec, "dispatch")
        enqueued = self.store.enqueue(spec)
        mission = enqueued.mission
        if enqueued.created:
            log.info("mission_dispatched", mission_id=mission.mission_id, vp_id=mission.vp_id, lane=mission.lane)
            for bell in self.doorbells:
                bell.wake(mission.vp_id)
        return enqueued

    def cancel(self, mission_id: str) -> CancelOutcome:
        outcome = self.store.request_cancel(mission_id)
        if outcome.changed:
            log.info("mission_cancel_requested", mission_id=mission_id, status=outcome.mission.status.value)
            for bell in self.doorbells:
                bell.cancel(outcome.mission.vp_id, mission_id)
        return outcome
