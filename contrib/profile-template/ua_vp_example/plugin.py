"""ECHO's hook implementations: its settings, its profile and its runtime.

Enabled wherever it is installed (unless ``UA_VP_ENABLED_IDS`` lists others); run it
with ``ua-vp worker --profile vp.example.echo``. The hooks are documented in ``ua_vp.hookspecs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from ua_vp import Mission, MissionContext, PluginSettings, Profile, Result, Settings, hookimpl
from ua_vp.profiles import Executor, RuntimeFactory

VP_ID = "vp.example.echo"
RUNTIME = "example-echo"


class ExampleSettings(PluginSettings):
    """ECHO's own settings, read from ``UA_VP_EXAMPLE_*`` variables (and ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="UA_VP_EXAMPLE_")

    workspace_root: Path | None = None
    """Where its missions' folders go. Unset: ``<UA_VP_STATE_DIR>/workspaces/example``."""
    runtime: str = RUNTIME
    """Client runtime: ``example-echo`` (this plugin's own), or a built-in one such as
    ``claude-cli``, ``codex-cli``, ``command``, ``openai`` or ``dry-run``."""


@hookimpl
def ua_vp_plugin_settings() -> type[ExampleSettings]:
    return ExampleSettings


@hookimpl
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    own = settings.plugin(ExampleSettings)
    return [
        Profile(
            vp_id=VP_ID,
            name="ECHO",
            description="Writes the objective back as a note: replace with what your VP does.",
            workspace_root=settings.workspace_root("example", own.workspace_root),
            runtime=own.runtime,
        )
    ]


@dataclass
class ExampleExecutor:
    """Runs one mission. A real one starts an agent (see ``ua_vp.runtimes``) and lets asyncio
    cancellation stop it; raise ``ua_vp.UaVpError`` subclasses for failures with a code."""

    async def execute(self, mission: Mission, ctx: MissionContext) -> Result:
        ctx.emit("note", {"message": "writing NOTE.md"})
        (ctx.workspace / "NOTE.md").write_text(f"# {mission.mission_type}\n\n{mission.objective}\n")
        return Result(summary=f"echoed: {mission.objective}", artifacts=["NOTE.md"], model_ran=False)


def _executor(profile: Profile, settings: Settings) -> Executor:
    return ExampleExecutor()


@hookimpl
def ua_vp_client_runtimes() -> dict[str, RuntimeFactory]:
    return {RUNTIME: _executor}
