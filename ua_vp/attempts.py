"""The folders one attempt at a mission gets: a fresh workspace and a private home.

Every attempt starts in an *empty* workspace that the worker has just made. A
previous attempt's agent may have left anything in the old one (a symlink named
like the file the host is about to write, a FIFO that blocks the host's
``open``, millions of files), so the host never reuses it: it is moved aside to
``<mission_id>.attempt-<n>`` in the same workspace root (a rename does not
follow links; the sandbox hides it from every mission) and kept for people to
look at.

The home (``HOME``, the XDG folders and ``TMPDIR`` of the mission's processes)
lives outside the workspace, under ``<state_dir>/homes/<mission_id>.<attempt>``,
mode 0700, and is removed when the attempt ends: a CLI's caches and whatever
credentials a runtime seeds into it do not outlive the attempt.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import structlog

from ua_vp.missions import Mission

log = structlog.get_logger(__name__)

PREVIOUS_SUFFIX = ".attempt-"


def fresh_workspace(root: Path, mission: Mission) -> Path:
    """``<root>/<mission_id>``, newly created and empty; an older one is moved aside first."""
    root.mkdir(parents=True, exist_ok=True)
    workspace = root / mission.mission_id
    if os.path.lexists(workspace):
        aside = _free_name(root, f"{mission.mission_id}{PREVIOUS_SUFFIX}", start=max(1, mission.attempt - 1))
        os.rename(workspace, aside)
        log.info("previous_workspace_moved_aside", mission_id=mission.mission_id, to=str(aside))
    # mkdir, not exist_ok: it fails rather than adopt anything that appeared in between.
    os.mkdir(workspace)
    return workspace


def fresh_home(homes_root: Path, mission: Mission) -> Path:
    """A new, empty, private ``<homes_root>/<mission_id>.<attempt>``."""
    homes_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(homes_root, 0o700)
    home = homes_root / f"{mission.mission_id}.{mission.attempt}"
    if os.path.lexists(home):  # left by a worker that died mid-attempt
        remove_home(home)
    os.mkdir(home, 0o700)
    return home


def remove_home(home: Path) -> None:
    """Delete ``home`` and everything in it, never following a link out of it."""
    if not os.path.lexists(home):
        return
    if os.path.islink(home) or not os.path.isdir(home):
        os.unlink(home)
        return
    # On Linux rmtree works through file descriptors (avoids_symlink_attacks), so a link
    # planted inside cannot redirect it; it never opens a file, so a FIFO cannot block it.
    try:
        shutil.rmtree(home)
    except OSError as exc:
        log.warning("home_not_fully_removed", home=str(home), error=str(exc))


def _free_name(root: Path, prefix: str, *, start: int) -> Path:
    n = start
    while os.path.lexists(root / f"{prefix}{n}"):
        n += 1
    return root / f"{prefix}{n}"
