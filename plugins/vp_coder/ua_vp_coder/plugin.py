"""CODIE's hook implementations.

CODIE does coding work in its own workspace. With ``UA_VP_HARD_BLOCK_UA_REPO=1``
(the default) the host's path guard refuses any mission path inside the host's
own repo and runtime roots, at dispatch and again in the worker.
"""

from __future__ import annotations

from typing import Any

from ua_vp import InvalidRequest, Profile, hookimpl
from ua_vp.config import Settings

VP_ID = "vp.coder.primary"
MISSION_TYPES = ("task", "code", "fix", "review", "greenfield")


@hookimpl
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    return [
        Profile(
            vp_id=VP_ID,
            name="CODIE",
            description="Coding missions in an isolated workspace; kept off the host's own repo and runtime roots.",
            workspace_root=settings.workspace_root("coder", settings.coder_workspace_root),
            runtime=settings.coder_runtime,
            mission_types=MISSION_TYPES,
            hard_block=settings.hard_block_ua_repo,
        )
    ]


@hookimpl
def ua_vp_check_mission(profile: Profile, mission: Any, phase: str) -> None:
    if profile.vp_id != VP_ID:
        return
    # A coding mission that names a repository must name one CODIE may work in;
    # the path guard has already judged every path, this only insists on shape.
    repo = mission.constraints.get("repo_path")
    if repo is not None and not isinstance(repo, str):
        raise InvalidRequest("constraints.repo_path must be a path string", field="constraints.repo_path")
