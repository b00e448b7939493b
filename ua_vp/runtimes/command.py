"""``command``: any program, from the ``UA_VP_COMMAND`` template, in the mission workspace.

The template is split like a shell would (``shlex``) *before* placeholders are
filled, so an objective with spaces or quotes stays one argument and is never
interpreted by a shell. Placeholders: ``{objective}``, ``{objective_file}``,
``{workspace}``, ``{mission_id}``, ``{vp_id}``, ``{mission_type}``; write a
literal brace as ``{{`` or ``}}``.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ua_vp.errors import ConfigError
from ua_vp.profiles import Result
from ua_vp.runtimes.common import collect_artifacts, write_new_file
from ua_vp.runtimes.process import output_events, run_process

if TYPE_CHECKING:
    from pathlib import Path

    from ua_vp.config import Settings
    from ua_vp.missions import Mission
    from ua_vp.profiles import MissionContext, Profile

OBJECTIVE_FILE = "OBJECTIVE.md"
PLACEHOLDERS = ("objective", "objective_file", "workspace", "mission_id", "vp_id", "mission_type")
SUMMARY_LINES = 5


def parse_template(template: str | None) -> list[str]:
    """Split and check the template; :class:`ConfigError` naming ``UA_VP_COMMAND`` if unusable."""
    if not template or not template.strip():
        raise ConfigError(
            "the command runtime needs a command: set UA_VP_COMMAND, e.g. 'my-agent --task {objective_file}'",
            setting="UA_VP_COMMAND",
        )
    try:
        parts = shlex.split(template)
        _fill(parts, dict.fromkeys(PLACEHOLDERS, "x"))
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"UA_VP_COMMAND is not a usable template ({type(exc).__name__}: {exc}); placeholders are "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            + "; write literal braces as {{ and }}",
            setting="UA_VP_COMMAND",
        ) from None
    return parts


def build_argv(parts: list[str], mission: Mission, workspace: Path) -> list[str]:
    objective_file = write_new_file(workspace, OBJECTIVE_FILE, mission.objective)
    values = {
        "objective": mission.objective,
        "objective_file": str(objective_file),
        "workspace": str(workspace),
        "mission_id": mission.mission_id,
        "vp_id": mission.vp_id,
        "mission_type": mission.mission_type,
    }
    return _fill(parts, values)


def _fill(parts: list[str], values: dict[str, str]) -> list[str]:
    # format() substitutes once: braces inside an objective are left as they are.
    return [part.format(**values) for part in parts]


@dataclass(frozen=True)
class CommandExecutor:
    profile: Profile
    parts: list[str]

    async def execute(self, mission: Mission, ctx: MissionContext) -> Result:
        argv = await asyncio.to_thread(build_argv, self.parts, mission, ctx.workspace)
        env = {
            "UA_VP_MISSION_ID": mission.mission_id,
            "UA_VP_VP_ID": mission.vp_id,
            "UA_VP_WORKSPACE": str(ctx.workspace),
        }
        proc = await run_process(argv, ctx, on_stdout=output_events(ctx, "stdout"), env=env, setting="UA_VP_COMMAND")
        last = [line for line in proc.stdout_tail if line.strip()][-SUMMARY_LINES:]
        return Result(
            summary="\n".join(last) or f"{proc.program} exited 0 without output",
            artifacts=await collect_artifacts(ctx.workspace, skip=frozenset({OBJECTIVE_FILE})),
            usage={"output_bytes": proc.output_bytes, "seconds": proc.seconds},
            data={"exit_code": proc.exit_code},
        )


def create(profile: Profile, settings: Settings) -> CommandExecutor:
    return CommandExecutor(profile, parse_template(settings.command))
