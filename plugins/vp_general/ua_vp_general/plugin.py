"""GENERALIST's hook implementations: research, writing and planning missions
that write their artifacts into the mission workspace."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from ua_vp import PluginSettings, Profile, Settings, hookimpl

VP_ID = "vp.general.primary"


class GeneralSettings(PluginSettings):
    """GENERALIST's settings: ``UA_VP_GENERAL_*``."""

    model_config = SettingsConfigDict(env_prefix="UA_VP_GENERAL_")

    workspace_root: Path | None = None
    """GENERALIST's workspace root. Unset: ``<UA_VP_STATE_DIR>/workspaces/general``."""
    runtime: str = "dry-run"
    """Client runtime for GENERALIST's missions: dry-run, command, claude-cli, codex-cli, openai."""


@hookimpl
def ua_vp_plugin_settings() -> type[GeneralSettings]:
    return GeneralSettings


@hookimpl
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    own = settings.plugin(GeneralSettings)
    return [
        Profile(
            vp_id=VP_ID,
            name="GENERALIST",
            description="Research, writing and planning missions; artifacts land in the mission workspace.",
            workspace_root=settings.workspace_root("general", own.workspace_root),
            runtime=own.runtime,
            mission_types=("task", "research", "writing", "planning"),
            # The host's own roots stay protected by the allowed-roots rule; the hard
            # block that also covers overlapping allowed roots is CODIE's.
            hard_block=False,
        )
    ]
