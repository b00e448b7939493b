"""CODIE's hook implementations.

CODIE does coding work in its own workspace. With ``UA_VP_HARD_BLOCK_UA_REPO=1``
(the default) the host's path guard refuses any mission path inside the host's
own repo and runtime roots, at dispatch and again in the worker.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ua_vp import GuardViolation, Mission, MissionSpec, PluginSettings, Profile, Settings, hookimpl

VP_ID = "vp.coder.primary"
MISSION_TYPES = ("task", "code", "fix", "review", "greenfield")


class CoderSettings(PluginSettings):
    """CODIE's settings: ``UA_VP_CODER_*``, plus the hard block it has always read."""

    model_config = SettingsConfigDict(env_prefix="UA_VP_CODER_")

    workspace_root: Path | None = None
    """CODIE's workspace root (one folder per mission). Unset: ``<UA_VP_STATE_DIR>/workspaces/coder``."""
    runtime: str = "dry-run"
    """Client runtime for CODIE's missions: dry-run, command, claude-cli, codex-cli, openai."""
    hard_block_ua_repo: bool = Field(default=True, validation_alias="UA_VP_HARD_BLOCK_UA_REPO")
    """Refuse every mission path inside the host's own repo and runtime roots."""


@hookimpl
def ua_vp_plugin_settings() -> type[CoderSettings]:
    return CoderSettings


@hookimpl
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    own = settings.plugin(CoderSettings)
    return [
        Profile(
            vp_id=VP_ID,
            name="CODIE",
            description="Coding missions in an isolated workspace; kept off the host's own repo and runtime roots.",
            workspace_root=settings.workspace_root("coder", own.workspace_root),
            runtime=own.runtime,
            mission_types=MISSION_TYPES,
            hard_block=own.hard_block_ua_repo,
        )
    ]


@hookimpl
def ua_vp_check_mission(profile: Profile, mission: MissionSpec | Mission, phase: str) -> None:
    if profile.vp_id != VP_ID:
        return
    # A coding mission that names a repository must name one CODIE may work in;
    # the path guard has already judged every path, this only insists on shape.
    repo = mission.constraints.get("repo_path")
    if repo is not None and not isinstance(repo, str):
        raise GuardViolation(
            "constraints.repo_path must be a path string",
            path=repr(repo)[:200],
            rule="repo_path_shape",
            field="constraints.repo_path",
        )
