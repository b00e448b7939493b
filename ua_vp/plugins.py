"""Builds the plugin manager and the :class:`Registry` of profiles the host serves.

One function, as pluggy's own example host does it: ``PluginManager("ua_vp")`` ->
hook specs -> built-ins -> ``load_setuptools_entrypoints("ua_vp")`` ->
``check_pending()`` so a misspelt hook name fails loudly.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import pluggy
import structlog

from ua_vp import guard, hookspecs
from ua_vp.errors import PluginError, ProfileDisabled, UnknownProfile

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.missions import MissionEvent
    from ua_vp.profiles import Executor, Profile, RuntimeFactory

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "ua_vp"

# The host's own behaviour, registered through the same hooks a third party uses.
DEFAULT_PLUGINS = ("ua_vp.runtimes.builtin",)


def make_plugin_manager(*, extra_plugins: Iterable[Any] = (), load_entrypoints: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("ua_vp")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    for plugin in extra_plugins:
        pm.register(plugin)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


@dataclass
class Registry:
    """The installed and enabled profiles, their runtimes and guard policies."""

    settings: Settings
    pm: pluggy.PluginManager
    installed: dict[str, Profile]
    providers: dict[str, str]
    """vp_id -> name of the plugin that provides it."""
    runtimes: dict[str, RuntimeFactory]
    _policies: dict[str, guard.GuardPolicy] = field(default_factory=dict)

    @cached_property
    def enabled(self) -> dict[str, Profile]:
        return {vp_id: self.installed[vp_id] for vp_id in self.settings.enabled_ids if vp_id in self.installed}

    def profile(self, vp_id: str) -> Profile:
        """The enabled profile for ``vp_id``, or a clear error naming what exists."""
        if vp_id in self.enabled:
            return self.enabled[vp_id]
        listing = (
            f"enabled: {', '.join(self.enabled) or 'none'}; installed: {', '.join(sorted(self.installed)) or 'none'}"
        )
        if vp_id in self.installed:
            raise ProfileDisabled(
                f"vp_id {vp_id!r} is installed but not enabled on this host (add it to UA_VP_ENABLED_IDS); {listing}",
                vp_id=vp_id,
                enabled=list(self.enabled),
                installed=sorted(self.installed),
            )
        raise UnknownProfile(
            f"no installed profile has vp_id {vp_id!r}; {listing}",
            vp_id=vp_id,
            enabled=list(self.enabled),
            installed=sorted(self.installed),
        )

    def policy(self, profile: Profile) -> guard.GuardPolicy:
        if profile.vp_id not in self._policies:
            extra_protected = [
                p
                for roots in self.pm.hook.ua_vp_protected_roots(profile=profile, settings=self.settings)
                for p in roots
            ]
            extra_allowed = [
                p for roots in self.pm.hook.ua_vp_allowed_roots(profile=profile, settings=self.settings) for p in roots
            ]
            self._policies[profile.vp_id] = guard.build_policy(
                profile, self.settings, extra_protected=extra_protected, extra_allowed=extra_allowed
            )
        return self._policies[profile.vp_id]

    def check_mission(self, mission: Any, phase: str, *, workspace: Any = None) -> Profile:
        """Resolve the profile and run every guard on ``mission``; returns the profile."""
        profile = self.profile(mission.vp_id)
        if profile.mission_types and mission.mission_type not in profile.mission_types:
            from ua_vp.errors import InvalidRequest

            raise InvalidRequest(
                f"{profile.vp_id} does not take mission_type {mission.mission_type!r}; "
                f"it takes {', '.join(profile.mission_types)}",
                field="mission_type",
            )
        guard.check_constraints(self.policy(profile), mission.constraints, base=workspace)
        self.pm.hook.ua_vp_check_mission(profile=profile, mission=mission, phase=phase)
        return profile

    def executor(self, profile: Profile) -> Executor:
        executor = self.pm.hook.ua_vp_create_executor(profile=profile, settings=self.settings)
        if executor is not None:
            return executor  # type: ignore[no-any-return]
        try:
            factory = self.runtimes[profile.runtime]
        except KeyError:
            raise PluginError(
                f"profile {profile.vp_id} asks for client runtime {profile.runtime!r}, which is not installed; "
                f"installed runtimes: {', '.join(sorted(self.runtimes))}"
            ) from None
        return factory(profile, self.settings)

    def notify(self, events: Iterable[MissionEvent]) -> None:
        for event in events:
            try:
                self.pm.hook.ua_vp_mission_event(event=event)
            except Exception:  # observers must never break the mission path
                log.exception("mission_event_observer_failed", mission_id=event.mission_id, event_type=event.event_type)


def load_registry(
    settings: Settings, *, extra_plugins: Iterable[Any] = (), load_entrypoints: bool = True, validate: bool = True
) -> Registry:
    """Build the registry; with ``validate`` (start-up) every enabled id must be installed
    and every enabled profile's guard policy must be sound."""
    pm = make_plugin_manager(extra_plugins=extra_plugins, load_entrypoints=load_entrypoints)
    installed: dict[str, Profile] = {}
    providers: dict[str, str] = {}
    for impl in pm.hook.ua_vp_profiles.get_hookimpls():
        plugin_name = impl.plugin_name
        for profile in cast("list[Profile]", impl.function(settings=settings) or []):
            if profile.vp_id in installed:
                raise PluginError(
                    f"vp_id {profile.vp_id!r} is provided by two plugins: {providers[profile.vp_id]!r} and "
                    f"{plugin_name!r}; uninstall one of them",
                    vp_id=profile.vp_id,
                    plugins=[providers[profile.vp_id], plugin_name],
                )
            installed[profile.vp_id] = profile
            providers[profile.vp_id] = plugin_name
    runtimes: dict[str, RuntimeFactory] = {}
    runtime_owner: dict[str, str] = {}
    for impl in pm.hook.ua_vp_client_runtimes.get_hookimpls():
        for name, factory in cast("dict[str, RuntimeFactory]", impl.function() or {}).items():
            if name in runtimes:
                raise PluginError(
                    f"client runtime {name!r} is provided by two plugins: "
                    f"{runtime_owner[name]!r} and {impl.plugin_name!r}"
                )
            runtimes[name] = factory
            runtime_owner[name] = impl.plugin_name
    registry = Registry(settings=settings, pm=pm, installed=installed, providers=providers, runtimes=runtimes)
    if validate:
        missing = [vp_id for vp_id in settings.enabled_ids if vp_id not in installed]
        if missing:
            raise PluginError(
                f"UA_VP_ENABLED_IDS names {', '.join(missing)}, which no installed plugin provides; "
                f"installed: {', '.join(sorted(installed)) or 'none'} "
                "(pip install the profile's package, e.g. ua-vp-coder)",
                missing=missing,
                installed=sorted(installed),
            )
        for profile in registry.enabled.values():
            registry.policy(profile)
    return registry
