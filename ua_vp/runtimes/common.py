"""What the model runtimes share: prompts built from a mission, the token budget
check, and the list of files a mission left in its workspace."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ua_vp.errors import BudgetExceeded

if TYPE_CHECKING:
    from ua_vp.missions import Mission
    from ua_vp.profiles import Profile

MAX_ARTIFACTS = 200
MAX_WALKED = 10_000
"""Folders and files looked at when listing artifacts: an agent can leave 300k empty
folders, and the listing must not take seconds over them (it runs off the event loop too)."""

# Anthropic counts cache reads and writes apart from ``input_tokens``; OpenAI's
# ``prompt_tokens`` (and codex's ``input_tokens``) already include cached ones.
# Summing these gives "every prompt token processed plus the output" for both.
_TOKEN_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "prompt_tokens",
    "completion_tokens",
)


def object_at(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``obj[key]`` when it is a JSON object, else an empty one: for reading loosely specified output."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def system_prompt(profile: Profile) -> str:
    return (
        f"You are {profile.name} ({profile.vp_id}): {profile.description} "
        "You carry out one mission. Finish with a short account of what you did and what is left."
    )


def mission_prompt(mission: Mission) -> str:
    parts = [mission.objective.strip(), "", f"Mission type: {mission.mission_type}"]
    if mission.constraints:
        parts += ["Constraints (JSON):", json.dumps(mission.constraints, indent=2, sort_keys=True)]
    return "\n".join(parts)


def agent_prompt(mission: Mission, profile: Profile) -> str:
    """One prompt for agent CLIs, which take no separate system message on the command line."""
    return (
        f"{system_prompt(profile)} Your working directory is the mission workspace; write any files there."
        f"\n\n{mission_prompt(mission)}"
    )


def tokens_used(usage: Mapping[str, Any]) -> int | None:
    """Total tokens in a usage report (OpenAI or Anthropic shape); None when it counts none."""
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    counts = [v for k in _TOKEN_FIELDS if isinstance(v := usage.get(k), int) and not isinstance(v, bool)]
    return sum(counts) if counts else None


def check_token_budget(budget: Mapping[str, Any], usage: Mapping[str, Any], *, who: str) -> None:
    """Raise :class:`BudgetExceeded` when ``usage`` is over ``budget.max_tokens``."""
    limit = budget.get("max_tokens")
    used = tokens_used(usage)
    if limit is None or used is None or used <= limit:
        return
    raise BudgetExceeded(
        f"{who} used {used} tokens, more than budget.max_tokens={limit}",
        budget="max_tokens",
        limit=limit,
        used=used,
    )


def list_artifacts(workspace: Path, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Files in ``workspace`` (relative, sorted), leaving out hidden folders such as ``.git``.
    Blocking and bounded (:data:`MAX_ARTIFACTS` found, :data:`MAX_WALKED` looked at):
    call it in a thread."""
    found: list[str] = []
    walked = 0
    for root, dirs, files in os.walk(workspace):
        walked += 1 + len(dirs) + len(files)
        if walked > MAX_WALKED:
            return found
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            rel = (Path(root) / name).relative_to(workspace).as_posix()
            if rel not in skip:
                found.append(rel)
            if len(found) >= MAX_ARTIFACTS:
                # A mission that leaves thousands of files (a node_modules) gets a sample, not a walk of all.
                return found
    return found
