"""What the model runtimes share: prompts built from a mission, the token budget
check, and the list of files a mission left in its workspace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ua_vp.errors import BudgetExceeded

if TYPE_CHECKING:
    from ua_vp.missions import Mission
    from ua_vp.profiles import Profile

MAX_ARTIFACTS = 200
MAX_ENTRIES_SEEN = 20_000
"""Entries the artifact listing looks at before it stops (a planted tree of millions must not stall it)."""
MAX_LISTING_SECONDS = 2.0

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


def list_artifacts(
    workspace: Path,
    *,
    skip: frozenset[str] = frozenset(),
    limit: int = MAX_ARTIFACTS,
    max_entries: int = MAX_ENTRIES_SEEN,
    max_seconds: float = MAX_LISTING_SECONDS,
) -> list[str]:
    """Regular files in ``workspace`` (relative, sorted per folder), leaving out hidden folders such as ``.git``.

    The agent made this tree, so the walk assumes it is hostile: it never follows a
    symlink, never opens a file (a FIFO cannot block it), lists regular files only, and
    stops after ``limit`` files, ``max_entries`` entries looked at, or ``max_seconds``.
    Blocking: call it through :func:`collect_artifacts` from the event loop.
    """
    found: list[str] = []
    seen = 0
    stop_at = time.monotonic() + max_seconds
    folders = [Path(workspace)]
    while folders:
        folder = folders.pop(0)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > max_entries or time.monotonic() > stop_at:
                return found
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        folders.append(Path(entry.path))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # symlinks, FIFOs, sockets, devices
            except OSError:
                continue
            rel = Path(entry.path).relative_to(workspace).as_posix()
            if rel not in skip:
                found.append(rel)
                if len(found) >= limit:
                    # A mission that leaves thousands of files (a node_modules) gets a sample, not a walk of all.
                    return found
    return found


async def collect_artifacts(workspace: Path, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """:func:`list_artifacts` off the event loop."""
    return await asyncio.to_thread(list_artifacts, workspace, skip=skip)


def write_new_file(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` to a new file ``folder/name`` that the host alone created.

    Whatever was at that name is unlinked first (not followed), and the file is made with
    ``O_CREAT|O_EXCL|O_NOFOLLOW|O_NONBLOCK``: a symlink, FIFO or file planted there by an
    agent in between makes this fail, never write elsewhere or hang.
    """
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(name, dir_fd=dir_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return folder / name
