"""The whole of a profile plugin: one Profile, one executor.

Enable it with ``UA_VP_ENABLED_IDS=vp.example.echo,...`` and run
``ua-vp worker --profile vp.example.echo``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ua_vp import Mission, MissionContext, Profile, Result, hookimpl
from ua_vp.config import Settings

VP_ID = "vp.example.echo"


@hookimpl
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    return [
        Profile(
            vp_id=VP_ID,
            name="ECHO",
            description="Writes the objective back as a note: a template to copy.",
            workspace_root=settings.state_dir / "workspaces" / "example",
            runtime="echo",
        )
    ]


@dataclass
class EchoExecutor:
    """Executors are plain objects with one async method. A real one would start an
    agent (see the built-in runtimes) and must let asyncio cancellation stop it."""

    async def execute(self, mission: Mission, ctx: MissionContext) -> Result:
        ctx.emit("note", {"message": "writing NOTE.md"})
        (ctx.workspace / "NOTE.md").write_text(f"# {mission.mission_type}\n\n{mission.objective}\n")
        return Result(summary=f"echoed: {mission.objective}", artifacts=["NOTE.md"], model_ran=False)


@hookimpl
def ua_vp_create_executor(profile: Profile, settings: Settings) -> EchoExecutor | None:
    # firstresult: answer only for our own profile, None lets others decide.
    return EchoExecutor() if profile.vp_id == VP_ID else None
