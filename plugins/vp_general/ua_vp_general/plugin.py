"""GENERALIST's hook implementations: research, writing and planning missions
that write their artifacts into the mission workspace."""

from __future__ import annotations

from ua_vp import Profile, hookimpl
from ua_vp.config import Settings

VP_ID = "vp.general.primary"


@hookimpl
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    return [
        Profile(
            vp_id=VP_ID,
            name="GENERALIST",
            description="Research, writing and planning missions; artifacts land in the mission workspace.",
            workspace_root=settings.workspace_root("general", settings.general_workspace_root),
            runtime=settings.general_runtime,
            mission_types=("task", "research", "writing", "planning"),
            # The host's own roots stay protected by the allowed-roots rule; the hard
            # block that also covers overlapping allowed roots is CODIE's.
            hard_block=False,
        )
    ]
