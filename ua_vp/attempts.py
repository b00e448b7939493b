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

The full output of its processes goes to ``<state_dir>/output/<mission_id>.<attempt>.log``
(:class:`OutputLog`), written by the worker only: the folder is outside every
workspace and hidden from every sandbox, and the file is created new, never
through a link, and kept after the attempt for people to read.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import structlog

from ua_vp import redact
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


class OutputLog:
    """An attempt's stdout and stderr lines (``out| `` / ``err| ``), masked by :mod:`ua_vp.redact`
    as events are, up to ``limit`` bytes; past it a last line says how much was cut."""

    def __init__(self, path: Path, limit: int) -> None:
        # O_EXCL and O_NOFOLLOW: never a file or link someone put there; 0600: the output may hold secrets.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.path = path
        self.limit = limit
        self.written = 0
        self.cut = 0
        self._file = os.fdopen(os.open(path, flags, 0o600), "wb")

    def write(self, stream: str, line: str) -> None:
        data = f"{'err' if stream == 'stderr' else 'out'}| {redact.redact(line)}\n".encode(errors="replace")
        room = self.limit - self.written
        if len(data) > room:
            self.cut += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        self._file.write(data)
        self.written += len(data)

    def close(self) -> dict[str, object]:
        """Close the log; what the ``output_log`` progress event says about it."""
        if self.cut:
            self._file.write(f"\n[ua-vp: output log cut at {self.limit} bytes; {self.cut} more not kept]\n".encode())
        self._file.close()
        return {"path": str(self.path), "bytes": self.written, "cut_bytes": self.cut}


def open_output_log(output_root: Path, mission: Mission, limit: int) -> OutputLog:
    """A new ``<output_root>/<mission_id>.<attempt>.log``; one left by a worker that died mid-attempt
    is replaced (the name is this attempt's own)."""
    output_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(output_root, 0o700)
    path = output_root / f"{mission.mission_id}.{mission.attempt}.log"
    if os.path.lexists(path):
        os.unlink(path)
    return OutputLog(path, limit)


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
