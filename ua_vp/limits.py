"""Per-mission resource limits: memory, processes, file size and CPU time (``UA_VP_MISSION_*``).

Every process a mission starts runs through the wrapper :mod:`ua_vp.sandbox_exec`
(whatever the sandbox backend), which applies the limits to itself before it
execs; rlimits and cgroup membership carry over exec and fork, so the whole
process tree is covered. What holds where depends on what the worker may do on
this machine, probed once at worker start (:func:`from_settings`):

- **memory** and **processes**: a cgroup of the process tree's own, made by the
  worker under its own cgroup (cgroup v2 ``memory.max``/``pids.max`` where the
  worker may enable those controllers for a child, else the v1 ``memory`` and
  ``pids`` hierarchies), joined by the wrapper. The limit is on the whole tree
  and a breach is certain: the kernel's counters say so.
- Without such a cgroup, memory is limited **per process** by ``RLIMIT_DATA``
  (not ``RLIMIT_AS``: node and V8 reserve far more address space than they
  use), and processes are **not** limited: ``RLIMIT_NPROC`` counts every process
  of the user, not of one mission, and never binds root.
- **file size** (``RLIMIT_FSIZE``) and **CPU time** (``RLIMIT_CPU``): per
  process rlimits everywhere. CPU time counts all of a process's threads.

A limit of 0 switches it off. The ``sandbox`` progress event records what held
how (:meth:`Limits.record`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from ua_vp.errors import LimitExceeded, RuntimeFailed

if TYPE_CHECKING:
    from ua_vp.config import Settings

log = structlog.get_logger(__name__)

Kind = Literal["memory", "pids", "file", "cpu"]
MB = 1024 * 1024
CPU_GRACE_SECONDS = 5
"""SIGXCPU comes at the limit; a process that ignores it gets SIGKILL this much later."""
SETTINGS: dict[Kind, str] = {
    "memory": "UA_VP_MISSION_MEMORY_MB",
    "pids": "UA_VP_MISSION_MAX_PIDS",
    "file": "UA_VP_MISSION_MAX_FILE_MB",
    "cpu": "UA_VP_MISSION_CPU_SECONDS",
}
_WHAT: dict[Kind, str] = {"memory": "memory", "pids": "process", "file": "file size", "cpu": "CPU time"}
# (controller, cgroup version) -> (limit file, events file, the event counting breaches)
_FILES = {
    ("memory", 2): ("memory.max", "memory.events", "oom_kill"),
    ("memory", 1): ("memory.limit_in_bytes", "memory.oom_control", "oom_kill"),
    ("pids", 2): ("pids.max", "pids.events", "max"),
    ("pids", 1): ("pids.max", "pids.events", "max"),
}
# What a process says on stderr when an rlimit stopped it without a signal (Python ignores
# SIGXFSZ and gets EFBIG; an allocation refused under RLIMIT_DATA is the program's own error).
_SAID: dict[Kind, re.Pattern[str]] = {
    "file": re.compile(r"File too large|File size limit exceeded"),
    "cpu": re.compile(r"CPU time limit exceeded"),
    "memory": re.compile(
        r"MemoryError|out of memory|Cannot allocate memory|bad_alloc|memory allocation of \d+ bytes failed",
        re.IGNORECASE,
    ),
}


@dataclass(frozen=True)
class Controller:
    """A cgroup controller the worker may use: where its child cgroups go."""

    name: Literal["memory", "pids"]
    version: int
    parent: Path
    """The worker's own cgroup in that hierarchy."""

    @property
    def limit_file(self) -> str:
        return _FILES[(self.name, self.version)][0]

    def describe(self) -> str:
        return f"cgroup v{self.version} {self.limit_file} (whole process tree)"


@dataclass(frozen=True)
class Limits:
    """The limits every process tree of a mission gets, and the cgroup controllers that hold
    memory and processes here (none: the rlimit fallback)."""

    memory_mb: int = 0
    max_pids: int = 0
    max_file_mb: int = 0
    cpu_seconds: int = 0
    controllers: tuple[Controller, ...] = ()

    def _controller(self, name: str) -> Controller | None:
        return next((c for c in self.controllers if c.name == name), None)

    def _value(self, kind: Kind) -> int:
        return {"memory": self.memory_mb, "pids": self.max_pids, "file": self.max_file_mb, "cpu": self.cpu_seconds}[
            kind
        ]

    def enforced_by(self, kind: Kind) -> str:
        """How ``kind`` holds here, in words for the ``sandbox`` event."""
        if not self._value(kind):
            return f"off ({SETTINGS[kind]}=0)"
        if kind in ("memory", "pids") and (found := self._controller(kind)) is not None:
            return found.describe()
        return {
            "memory": "RLIMIT_DATA (per process: no cgroup the worker may create here)",
            "pids": "not enforced: no cgroup the worker may create here (RLIMIT_NPROC would count all of the "
            "user's processes)",
            "file": "RLIMIT_FSIZE (per file, per process)",
            "cpu": "RLIMIT_CPU (per process)",
        }[kind]

    def record(self) -> dict[str, object]:
        """What the ``sandbox`` progress event says about the limits."""
        return {
            "memory_mb": self.memory_mb,
            "max_pids": self.max_pids,
            "max_file_mb": self.max_file_mb,
            "cpu_seconds": self.cpu_seconds,
            "enforced_by": {kind: self.enforced_by(kind) for kind in SETTINGS},
        }

    def start(self) -> Applied:
        """The limits for one process tree about to start: its cgroup is made now."""
        groups: dict[Controller, Path] = {}
        try:
            name = f"ua-vp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            for controller in self.controllers:
                value = self.memory_mb * MB if controller.name == "memory" else self.max_pids
                groups[controller] = _make_cgroup(controller, name, value)
        except OSError as exc:
            Applied(self, groups).close()
            raise RuntimeFailed(f"cannot create the mission's cgroup: {exc}", error=str(exc)) from None
        return Applied(self, groups)


@dataclass
class Applied:
    """The limits of one running process tree: the wrapper's arguments, what was breached, clean-up."""

    limits: Limits
    groups: dict[Controller, Path] = field(default_factory=dict)

    def wrapper_args(self) -> list[str]:
        """Options for :mod:`ua_vp.sandbox_exec` (empty: nothing to apply)."""
        lim = self.limits
        args: list[str] = []
        if lim.max_file_mb:
            args += ["--rlimit", f"fsize={lim.max_file_mb * MB}:{lim.max_file_mb * MB}"]
        if lim.cpu_seconds:
            args += ["--rlimit", f"cpu={lim.cpu_seconds}:{lim.cpu_seconds + CPU_GRACE_SECONDS}"]
        if lim.memory_mb and lim._controller("memory") is None:
            args += ["--rlimit", f"data={lim.memory_mb * MB}:{lim.memory_mb * MB}"]
        for folder in dict.fromkeys(self.groups.values()):
            args += ["--cgroup", str(folder)]
        return args

    def breach(self, exit_code: int, stderr: Sequence[str]) -> LimitExceeded | None:
        """The limit a failed process tree ran into, if any: the cgroup's counters first (certain),
        then the signal that ended it (SIGXFSZ, SIGXCPU), then what it said on stderr."""
        if exit_code == 0:
            return None
        for controller, folder in self.groups.items():
            if _events(folder, controller) > 0:
                how = "the OOM killer ended a process" if controller.name == "memory" else "the kernel refused a fork"
                return self._error(controller.name, how)
        # asyncio reports a signal's death as -signum; a wrapper or shell passes it on as 128 + signum.
        signum = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else 0
        if signum == signal.SIGXFSZ and self.limits.max_file_mb:
            return self._error("file", "killed by SIGXFSZ")
        if signum == signal.SIGXCPU and self.limits.cpu_seconds:
            return self._error("cpu", "killed by SIGXCPU")
        for kind, said in _SAID.items():
            if self.limits._value(kind) and (kind != "memory" or self.limits._controller("memory") is None):
                line = next((line for line in reversed(stderr) if said.search(line)), None)
                if line is not None:
                    return self._error(kind, f"its stderr says {line.strip()[:200]!r}")
        return None

    def _error(self, kind: Kind, how: str) -> LimitExceeded:
        value = self.limits._value(kind)
        unit = {"memory": " MB", "pids": " processes", "file": " MB", "cpu": " s"}[kind]
        return LimitExceeded(
            f"the mission's processes ran into the {_WHAT[kind]} limit of {value}{unit}, held by "
            f"{self.limits.enforced_by(kind)}: {how}; raise {SETTINGS[kind]} (0 switches it off)",
            limit=kind,
            setting=SETTINGS[kind],
            value=value,
        )

    def close(self) -> None:
        """Kill whatever is left in the cgroups (a process that left the group, under any backend)
        and remove them."""
        for folder in dict.fromkeys(self.groups.values()):
            _remove_cgroup(folder)


def from_settings(settings: Settings) -> Limits:
    """The configured limits, with the cgroup controllers this worker may use for them."""
    wanted = {"memory": settings.mission_memory_mb, "pids": settings.mission_max_pids}
    found = (cgroup_controller(name) for name, value in wanted.items() if value)
    return Limits(
        memory_mb=settings.mission_memory_mb,
        max_pids=settings.mission_max_pids,
        max_file_mb=settings.mission_max_file_mb,
        cpu_seconds=settings.mission_cpu_seconds,
        controllers=tuple(c for c in found if c is not None),
    )


@functools.cache
def cgroup_controller(name: str) -> Controller | None:
    """Where this process may make child cgroups with controller ``name``: cgroup v2 first, then
    v1; None when neither works here (no permission, controller not delegated). Probed once."""
    own = _own_cgroups()
    for root, point, fstype, options in _cgroup_mounts():
        version = 2 if fstype == "cgroup2" else 1
        path = own.get("" if version == 2 else name)
        if path is None or (version == 1 and name not in options):
            continue
        parent = _inside(point, root, path)
        if parent is None or (version == 2 and not _v2_enable(parent, name)):
            continue
        controller = Controller(name, version, parent)  # type: ignore[arg-type]
        if _trial(controller):
            _remove_leftovers(controller)
            return controller
    return None


def _remove_leftovers(controller: Controller) -> None:
    """Remove the empty cgroups of workers that are gone (killed before they could clean up).
    Only a dead worker's: a live one's may be about to be joined."""
    for folder in controller.parent.glob("ua-vp-*-*"):
        creator = folder.name.split("-")[2]
        if creator.isdigit() and not os.path.exists(f"/proc/{creator}"):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # fails, and stays, while a process is still in it


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per v1 controller, and under "" its v2 cgroup."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            for name in [""] if number == "0" else controllers.split(","):
                own[name] = path
    return own


def _cgroup_mounts() -> list[tuple[str, str, str, list[str]]]:
    """(root inside the hierarchy, mount point, cgroup or cgroup2, super options) per cgroup mount, v2 first."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            fields, (fstype, _source, options) = before.split(), after.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[3], fields[4], fstype, options.split(",")))
    return sorted(found, key=lambda mount: mount[2] != "cgroup2")


def _inside(point: str, root: str, path: str) -> Path | None:
    """Where cgroup ``path`` appears under a mount of the hierarchy at ``root``; None when it does not."""
    if not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None
    folder = Path(point) / path[len(root.rstrip("/")) :].lstrip("/")
    return folder if folder.is_dir() else None


def _v2_enable(parent: Path, name: str) -> bool:
    """Whether children of ``parent`` get controller ``name``, enabling it if ours to enable
    (refused when ``parent`` holds processes and is not a root: cgroup v2's no-internal-process rule)."""
    try:
        if name not in (parent / "cgroup.controllers").read_text().split():
            return False
        if name in (parent / "cgroup.subtree_control").read_text().split():
            return True
        (parent / "cgroup.subtree_control").write_text(f"+{name}")
        return True
    except OSError:
        return False


def _trial(controller: Controller) -> bool:
    try:
        folder = _make_cgroup(controller, f"ua-vp-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}", None)
    except OSError as exc:
        log.debug("cgroup_unusable", controller=controller.name, version=controller.version, error=str(exc))
        return False
    _remove_cgroup(folder)
    return True


def _make_cgroup(controller: Controller, name: str, value: int | None) -> Path:
    folder = controller.parent / name
    with contextlib.suppress(FileExistsError):  # v2: memory and pids share one folder
        os.mkdir(folder)
    if not (folder / controller.limit_file).exists():
        raise OSError(f"{folder} has no {controller.limit_file}")
    if value is not None:
        (folder / controller.limit_file).write_text(str(value))
        # With swap the memory limit bounds RAM only; the tree must not swap past it either.
        swap = {1: ("memory.memsw.limit_in_bytes", str(value)), 2: ("memory.swap.max", "0")}[controller.version]
        if controller.name == "memory" and (folder / swap[0]).exists():
            with contextlib.suppress(OSError):
                (folder / swap[0]).write_text(swap[1])
    return folder


def _events(folder: Path, controller: Controller) -> int:
    _, events, key = _FILES[(controller.name, controller.version)]
    with contextlib.suppress(OSError, ValueError):
        for line in (folder / events).read_text().splitlines():
            name, _, count = line.partition(" ")
            if name == key:
                return int(count)
    return 0


def _remove_cgroup(folder: Path) -> None:
    for _ in range(100):
        try:
            os.rmdir(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            pass  # busy: members still exiting, or left behind
        with contextlib.suppress(OSError, ValueError):
            for pid in (folder / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.01)
    log.warning("cgroup_not_removed", cgroup=str(folder))
