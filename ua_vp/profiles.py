"""What a profile plugin hands the host: a :class:`Profile`, and an :class:`Executor`
that runs one mission given a :class:`MissionContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from ua_vp.attempts import OutputLog
    from ua_vp.config import Settings
    from ua_vp.missions import Mission
    from ua_vp.sandbox import Sandbox


@dataclass(frozen=True, kw_only=True)
class Profile:
    """A kind of VP agent. Returned by a plugin's ``ua_vp_profiles`` hook."""

    vp_id: str
    """Stable id missions are addressed to, e.g. ``vp.coder.primary``."""
    name: str
    """Short display name, e.g. ``CODIE``."""
    description: str
    workspace_root: Path
    """Each mission gets its own folder below this root."""
    runtime: str = "dry-run"
    """Name of the client runtime that runs its missions (see ``ua_vp_client_runtimes``)."""
    mission_types: tuple[str, ...] = ("task",)
    """Mission types it accepts; empty means any."""
    hard_block: bool = False
    """Refuse every mission path inside the host's protected roots (CODIE sets this
    from ``UA_VP_HARD_BLOCK_UA_REPO``)."""


@dataclass(frozen=True, kw_only=True)
class Result:
    """What an executor returns for a mission that completed."""

    summary: str
    """One paragraph a person reads first."""
    artifacts: list[str] = field(default_factory=list)
    """Files written, relative to the mission workspace."""
    usage: dict[str, Any] = field(default_factory=dict)
    """Tokens, bytes, seconds: whatever the runtime can count."""
    data: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (the runtime's final message, exit code...)."""
    model_ran: bool = True
    """False when no model produced this result (the ``dry-run`` runtime)."""

    def to_json(self, runtime: str) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "artifacts": list(self.artifacts),
            "usage": dict(self.usage),
            "runtime": runtime,
            "model_ran": self.model_ran,
            **self.data,
        }


@dataclass(kw_only=True)
class MissionContext:
    """Everything an executor may use while it runs one mission."""

    mission: Mission
    profile: Profile
    settings: Settings
    workspace: Path
    """This mission's own folder, created before ``execute`` is called; the working directory."""
    deadline: float | None
    """``time.monotonic()`` value when ``budget.max_seconds`` runs out; None without one."""
    emit: Callable[[str, dict[str, Any]], None]
    """``emit(kind, payload)`` records a ``vp.mission.progress`` event ``{"kind": kind, **payload}``.
    Cheap and non-blocking; the worker rate-limits and writes them in batches."""
    log: FilteringBoundLogger
    """structlog logger with ``mission_id``, ``vp_id`` and ``worker_id`` bound."""
    home: Path | None = None
    """This attempt's own private home (``HOME``, the XDG folders and ``TMPDIR`` of its processes):
    created empty (mode 0700) outside the workspace before ``execute``, removed when the attempt ends,
    writable in the sandbox while every other mission's home stays hidden. None outside a worker:
    :func:`~ua_vp.runtimes.process.run_process` then uses a folder in the workspace."""
    output_log: OutputLog | None = None
    """Where :func:`~ua_vp.runtimes.process.run_process` keeps every output line of the attempt's
    processes (bounded); None outside a worker or with ``UA_VP_MISSION_OUTPUT_LOG_MB=0``."""
    sandbox: Sandbox | None = None
    """Where :func:`ua_vp.runtimes.process.run_process` confines the mission's processes; the
    worker always sets it (backend ``none`` when it runs them unconfined). None means nobody
    asked for a sandbox: an executor called outside a worker, as in tests."""

    @property
    def budget(self) -> dict[str, Any]:
        return self.mission.budget


@runtime_checkable
class Executor(Protocol):
    """Runs one mission. Cancellation (cancel request, lost lease, budget deadline,
    shutdown) arrives as :class:`asyncio.CancelledError`; an executor that starts
    a process must kill its whole process group before re-raising it.
    Raise :class:`ua_vp.errors.UaVpError` subclasses for failures with a code."""

    async def execute(self, mission: Mission, ctx: MissionContext) -> Result: ...


RuntimeFactory = Callable[["Profile", "Settings"], Executor]
"""A client runtime: builds the executor that runs a profile's missions."""
