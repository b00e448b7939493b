"""``vp.bench.noop``: a profile whose missions do nothing, to time the runtime around them.

Enable it with ``UA_VP_ENABLED_IDS=vp.bench.noop`` and run
``ua-vp worker --profile vp.bench.noop``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ua_vp import Mission, MissionContext, Profile, Result, hookimpl
from ua_vp.config import Settings

VP_ID = "vp.bench.noop"


@hookimpl
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    return [
        Profile(
            vp_id=VP_ID,
            name="NOOP",
            description="Completes every mission at once; for benchmarks.",
            workspace_root=settings.state_dir / "workspaces" / "bench-noop",
            runtime="noop",
        )
    ]


@dataclass
class NoopExecutor:
    async def execute(self, mission: Mission, ctx: MissionContext) -> Result:
        return Result(summary="noop", model_ran=False)


@hookimpl
def ua_vp_create_executor(profile: Profile, settings: Settings) -> NoopExecutor | None:
    # firstresult: answer only for our own profile.
    return NoopExecutor() if profile.vp_id == VP_ID else None
