"""``dry-run``: no model. Writes a plan derived from the mission alone and says so.

The default runtime, so a fresh install runs end to end offline. The plan
depends only on the mission's content (never on time, ids or the host), so the
same mission always yields a byte-identical ``PLAN.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ua_vp.profiles import Result
from ua_vp.runtimes.common import write_new_file

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.missions import Mission
    from ua_vp.profiles import MissionContext, Profile

PLAN_FILE = "PLAN.md"
_MAX_STEPS = 12


def render_plan(mission: Mission) -> str:
    """The plan text for ``mission``: a pure function of vp_id, type, objective, constraints and budget."""
    objective = mission.objective.strip()
    lines = [
        "# Plan (dry run)",
        "",
        "No model ran. The `dry-run` runtime wrote this plan from the mission alone;",
        "choose a model runtime for this profile to have the work done.",
        "",
        "## Mission",
        "",
        f"- vp_id: `{mission.vp_id}`",
        f"- type: `{mission.mission_type}`",
        "",
        "## Objective",
        "",
        *(f"> {line}".rstrip() for line in objective.splitlines()),
        "",
        "## Steps a model would take",
        "",
        *(f"{n}. {step}" for n, step in enumerate(_steps(mission), start=1)),
        "",
        "## Constraints",
        "",
        "```json",
        json.dumps(mission.constraints, indent=2, sort_keys=True),
        "```",
        "",
        "## Budget",
        "",
        *([f"- {key}: {mission.budget[key]}" for key in sorted(mission.budget)] or ["- none set"]),
        "",
    ]
    return "\n".join(lines)


def _steps(mission: Mission) -> list[str]:
    # Each sentence or list item of the objective becomes a step, so the plan visibly follows the request.
    pieces = re.split(r"(?<=[.!?])\s+|\n+", mission.objective.strip())
    items = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", p).strip() for p in pieces]
    work = [item for item in items if item][:_MAX_STEPS]
    steps = [f"Read the objective and the {len(mission.constraints)} constraint(s)."]
    steps += [f"Do: {item}" for item in work]
    steps.append("Check the result against every constraint.")
    if mission.budget:
        steps.append(
            "Stay within the budget (" + ", ".join(f"{k}={mission.budget[k]}" for k in sorted(mission.budget)) + ")."
        )
    steps.append("Report what was done and what is left.")
    return steps


@dataclass(frozen=True)
class DryRunExecutor:
    profile: Profile

    async def execute(self, mission: Mission, ctx: MissionContext) -> Result:
        ctx.emit("dry_run", {"message": "no model runs in the dry-run runtime; writing a plan"})
        text = render_plan(mission)
        await asyncio.to_thread(write_new_file, ctx.workspace, PLAN_FILE, text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        ctx.emit("artifact_written", {"path": PLAN_FILE, "bytes": len(text.encode()), "sha256": digest})
        return Result(
            summary=(
                f"dry-run: no model ran; wrote a plan for this {mission.mission_type} mission to {PLAN_FILE}. "
                f"Profile {self.profile.vp_id} uses the dry-run runtime; configure a model runtime "
                "(command, claude-cli, codex-cli or openai) to have the work done."
            ),
            artifacts=[PLAN_FILE],
            usage={"total_tokens": 0},
            data={"plan_sha256": digest},
            model_ran=False,
        )


def create(profile: Profile, settings: Settings) -> DryRunExecutor:
    return DryRunExecutor(profile)
