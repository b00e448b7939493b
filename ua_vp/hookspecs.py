"""The hooks a ua-vp plugin may implement.

A plugin is a module of functions decorated with ``@ua_vp.hookimpl`` and named
after the hooks below, registered under the ``ua_vp`` entry-point group::

    [project.entry-points.ua_vp]
    my_profile = "my_package.plugin"

The host's built-in runtimes and guard rules are registered through these very
hooks (``ua_vp.plugins.DEFAULT_PLUGINS``), so anything they do a third party can do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pluggy

if TYPE_CHECKING:
    from ua_vp.config import PluginSettings, Settings
    from ua_vp.missions import Mission, MissionEvent, MissionSpec
    from ua_vp.profiles import Executor, Profile, RuntimeFactory

Phase = Literal["dispatch", "worker"]

hookspec = pluggy.HookspecMarker("ua_vp")
hookimpl = pluggy.HookimplMarker("ua_vp")


# -------------------------------------------------------------------------
# Settings and profiles
# -------------------------------------------------------------------------


@hookspec
def ua_vp_plugin_settings() -> type[PluginSettings] | None:
    """Return this plugin's own settings model: a subclass of
    :class:`ua_vp.PluginSettings` with its own ``env_prefix``.

    The host reads and validates it at start-up (a bad value stops start-up
    naming its variable) and ``ua-vp profiles`` shows its effective values,
    secrets masked. Read it in the other hooks with ``settings.plugin(Model)``.
    Called once per plugin when the registry is built; every result is collected.
    """


@hookspec
def ua_vp_profiles(settings: Settings) -> list[Profile]:
    """Return the profiles this plugin provides.

    :param settings: the host's :class:`ua_vp.config.Settings`; read your own
        settings with ``settings.plugin(YourSettings)``, never the environment.

    Called once per plugin when the registry is built. Every result is collected;
    two plugins returning the same ``vp_id`` is a start-up error naming both. A
    plugin whose call raises is reported and left out; the others keep working.
    """


@hookspec(firstresult=True)
def ua_vp_create_executor(profile: Profile, settings: Settings) -> Executor | None:
    """Return the :class:`ua_vp.profiles.Executor` that runs ``profile``'s missions,
    or None to let the next implementation decide.

    Called once per profile when a worker (or the in-process lane) starts.
    ``firstresult``: the first non-None answer wins. The host's fallback builds
    the client runtime named by ``profile.runtime``.
    """


# -------------------------------------------------------------------------
# Path guard
# -------------------------------------------------------------------------


@hookspec
def ua_vp_protected_roots(profile: Profile, settings: Settings) -> list[Path]:
    """Return extra folders ``profile``'s missions must never touch.

    Collected from every plugin and added to the host's own (the installed
    ``ua_vp`` package, the state dir, the project checkout, ``UA_VP_PROTECTED_ROOTS``).
    Called when a guard policy is built (start-up of the API and of workers).
    """


@hookspec
def ua_vp_allowed_roots(profile: Profile, settings: Settings) -> list[Path]:
    """Return folders ``profile``'s missions may use besides its workspace root
    and ``UA_VP_HANDOFF_ROOT``. An allowed root inside a protected root is a
    start-up error, not a hole. Collected from every plugin.
    """


@hookspec
def ua_vp_check_mission(profile: Profile, mission: MissionSpec | Mission, phase: Phase) -> None:
    """Refuse a mission by raising :class:`ua_vp.errors.GuardViolation`.

    :param mission: a :class:`ua_vp.missions.MissionSpec` at dispatch, the
        stored :class:`ua_vp.missions.Mission` in the worker; both have
        ``vp_id``, ``mission_type``, ``objective``, ``constraints`` and ``budget``.
    :param phase: ``"dispatch"`` (before the row is written: nothing is
        written on refusal) or ``"worker"`` (just before execution: the mission
        is finalized ``failed`` with code ``guard_violation``).

    Called after the host's path guard (``ua_vp.guard``) accepted every path in
    ``constraints``; every implementation is called, so any one can refuse.
    """


# -------------------------------------------------------------------------
# Client runtimes and observers
# -------------------------------------------------------------------------


@hookspec
def ua_vp_client_runtimes() -> dict[str, RuntimeFactory]:
    """Return ``{name: factory}`` client runtimes, ``factory(profile, settings) -> Executor``.

    Collected from every plugin (called once per plugin); a name given twice is
    a start-up error. Built in: ``dry-run``, ``command``, ``claude-cli``, ``codex-cli``, ``openai``.
    """


@hookspec
def ua_vp_mission_event(event: MissionEvent) -> None:
    """Observe a mission event after it was committed (webhooks, metrics).

    Called in the process that wrote the event, for every event that process
    wrote. Must be quick and must not raise: errors are logged and ignored.
    """
