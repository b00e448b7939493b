"""Builds the plugin manager and the :class:`Registry` of profiles the host serves.

One function, as pluggy's own example host does it: ``PluginManager("ua_vp")`` ->
hook specs -> built-ins -> the ``ua_vp`` entry points -> ``check_pending()`` so a
misspelt hook name fails loudly. Unlike ``load_setuptools_entrypoints`` each entry
point is loaded on its own: a plugin that fails to import or register is reported
once (its distribution, version and the last line of its error) and left out, and
every other profile keeps working.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import pluggy
import structlog

from ua_vp import guard, hookspecs
from ua_vp.errors import (
    ConfigError,
    InvalidRequest,
    PluginError,
    ProfileBroken,
    ProfileDisabled,
    UaVpError,
    UnknownProfile,
)

if TYPE_CHECKING:
    from ua_vp.config import Settings
    from ua_vp.hookspecs import Phase
    from ua_vp.missions import Mission, MissionEvent, MissionSpec
    from ua_vp.profiles import Executor, Profile, RuntimeFactory

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "ua_vp"

# The host's own behaviour, registered through the same hooks a third party uses.
DEFAULT_PLUGINS = ("ua_vp.runtimes.builtin",)

_reported: set[tuple[str, str]] = set()
"""(plugin, error) pairs already logged: a broken plugin is reported once per process."""


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin left out because it failed to import, register or answer a hook."""

    name: str
    dist: str | None
    version: str | None
    error: str
    """The last line of its error."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dist": self.dist, "version": self.version, "error": self.error}


@dataclass(frozen=True)
class PluginInfo:
    """What one registered plugin is and provides (``ua-vp plugins``)."""

    name: str
    dist: str | None
    version: str | None
    hooks: tuple[str, ...]
    profiles: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()
    settings_model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "hooks": list(self.hooks),
            "profiles": list(self.profiles),
            "runtimes": list(self.runtimes),
            "settings_model": self.settings_model,
        }


@dataclass
class Plugins:
    """A plugin manager plus what became of each entry point."""

    pm: pluggy.PluginManager
    broken: list[BrokenPlugin] = field(default_factory=list)
    dists: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """plugin name -> (distribution, version); None for built-ins and test plugins."""

    def mark_broken(self, name: str, exc: BaseException) -> None:
        dist, version = self.dists.get(name, (None, None))
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        broken = BrokenPlugin(name=name, dist=dist, version=version, error=last)
        self.broken.append(broken)
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        if (name, last) not in _reported:
            _reported.add((name, last))
            log.warning(
                "plugin_broken",
                plugin=name,
                dist=dist,
                version=version,
                error=last,
                hint="its profiles and runtimes are left out; the others keep working (`ua-vp plugins`)",
            )


def _canonical(name: str) -> str:
    # PEP 503: `UA_VP_General`, `ua_vp.general` and `ua-vp-general` name one distribution.
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(ep: EntryPoint) -> set[str]:
    return {_canonical(ep.name), _canonical(ep.dist.name) if ep.dist else ""} - {""}


def make_plugin_manager(
    *,
    extra_plugins: Iterable[Any] = (),
    load_entrypoints: bool = True,
    only: list[str] | None = None,
    trace: bool = False,
) -> Plugins:
    """``only``: distribution or entry-point names to load (``UA_VP_LOAD_PLUGINS``); ``["none"]`` loads none."""
    pm = pluggy.PluginManager("ua_vp")
    pm.add_hookspecs(hookspecs)
    if trace:
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    plugins = Plugins(pm)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    for plugin in extra_plugins:
        pm.register(plugin)
    # Built-ins and plugins handed in by code must be right: a misspelt hook there fails loudly.
    pm.check_pending()
    wanted = None if only is None else {_canonical(w) for w in only} - {"none"}
    if load_entrypoints:
        found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        if wanted and (unknown := wanted - set().union(*(_names(ep) for ep in found))):
            log.warning(
                "load_plugins_name_not_installed",
                names=sorted(unknown),
                installed=sorted(ep.dist.name if ep.dist else ep.name for ep in found),
                hint="UA_VP_LOAD_PLUGINS names distributions or entry points; `ua-vp plugins` lists them",
            )
        for ep in found:
            if wanted is not None and not _names(ep) & wanted:
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            plugins.dists[ep.name] = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            try:
                pm.register(ep.load(), name=ep.name)
                pm.check_pending()
            except Exception as exc:
                plugins.mark_broken(ep.name, exc)
    return plugins


def call_each(plugins: Plugins, hook_name: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Call a hook once per implementing plugin, in pluggy's order, yielding ``(plugin name,
    result)`` for each non-None result.

    Each call goes through pluggy's hook caller (a subset caller holding that plugin and
    every wrapper), so tracing and hook wrappers apply, and what comes back can be credited
    to the plugin that answered. A third-party plugin whose call raises is marked broken
    and skipped, so one plugin's bug never takes the others down. A :class:`UaVpError` is
    an answer, not a bug: a bad setting stops start-up, a :class:`GuardViolation` refuses
    the mission."""
    pm = plugins.pm
    hook = getattr(pm.hook, hook_name)
    firstresult = bool(hook.spec and hook.spec.opts.get("firstresult"))
    impls = hook.get_hookimpls()
    wrappers = [i.plugin for i in impls if i.hookwrapper or i.wrapper]
    for impl in reversed(impls):  # pluggy calls the last registered first
        if impl.plugin in wrappers or pm.get_plugin(impl.plugin_name) is None:
            continue
        others = [p for _, p in pm.list_name_plugin() if p is not None and p is not impl.plugin and p not in wrappers]
        caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
        try:
            results = caller(**kwargs)
        except UaVpError:
            raise
        except Exception as exc:
            if impl.plugin_name not in plugins.dists:
                raise  # built-ins and code-registered plugins are ours to fix, loudly
            plugins.mark_broken(impl.plugin_name, exc)
            continue
        for result in [results] if firstresult else results:
            if result is not None:
                yield impl.plugin_name, result


@dataclass
class Registry:
    """The installed and enabled profiles, their runtimes and guard policies."""

    settings: Settings
    plugins: Plugins
    installed: dict[str, Profile]
    providers: dict[str, str]
    """vp_id -> name of the plugin that provides it."""
    runtimes: dict[str, RuntimeFactory]
    runtime_providers: dict[str, str] = field(default_factory=dict)
    settings_models: dict[str, type[Any]] = field(default_factory=dict)
    """plugin name -> the settings model it declared."""
    _policies: dict[str, guard.GuardPolicy] = field(default_factory=dict)

    @property
    def pm(self) -> pluggy.PluginManager:
        return self.plugins.pm

    @property
    def broken(self) -> list[BrokenPlugin]:
        return self.plugins.broken

    @cached_property
    def enabled(self) -> dict[str, Profile]:
        wanted = self.settings.enabled_ids
        if wanted is None:
            return dict(sorted(self.installed.items()))
        return {vp_id: self.installed[vp_id] for vp_id in wanted if vp_id in self.installed}

    @property
    def enabled_but_missing(self) -> list[str]:
        """Ids ``UA_VP_ENABLED_IDS`` names that no installed plugin provides."""
        return [i for i in self.settings.enabled_ids or [] if i not in self.installed]

    @property
    def remote(self) -> list[str]:
        """Ids accepted for workers elsewhere (``UA_VP_REMOTE_IDS``), not served by a plugin here."""
        return [i for i in self.settings.remote_ids if i not in self.installed]

    def _listing(self) -> str:
        listing = (
            f"enabled: {', '.join(self.enabled) or 'none'}; installed: {', '.join(sorted(self.installed)) or 'none'}"
        )
        if self.broken:
            listing += f"; broken plugins: {', '.join(b.name for b in self.broken)} (see `ua-vp plugins`)"
        return listing

    def _refuse_if_broken(self, vp_id: str) -> None:
        """:class:`ProfileBroken` when the plugin providing ``vp_id`` was left out, at start
        or since (one of its hooks raised in :func:`call_each`)."""
        broken = next((b for b in self.broken if b.name == self.providers.get(vp_id)), None)
        if broken is not None:
            raise ProfileBroken(
                f"vp_id {vp_id!r} is unavailable: its plugin {broken.name} failed ({broken.error}); "
                "`ua-vp plugins` shows it. Fix or upgrade the plugin and restart",
                vp_id=vp_id,
                plugin=broken.name,
            )

    def profile(self, vp_id: str) -> Profile:
        """The enabled profile for ``vp_id``, or a clear error naming what exists."""
        self._refuse_if_broken(vp_id)
        if vp_id in self.enabled:
            return self.enabled[vp_id]
        details = {"vp_id": vp_id, "enabled": list(self.enabled), "installed": sorted(self.installed)}
        if vp_id in self.installed:
            raise ProfileDisabled(
                f"vp_id {vp_id!r} is installed but not enabled on this host (add it to UA_VP_ENABLED_IDS); "
                + self._listing(),
                **details,
            )
        raise UnknownProfile(
            f"no installed profile has vp_id {vp_id!r}; {self._listing()}. Install the distribution that "
            "provides it here, or, if its workers run on other hosts, add it to UA_VP_REMOTE_IDS",
            **details,
        )

    def policy(self, profile: Profile) -> guard.GuardPolicy:
        if profile.vp_id not in self._policies:
            given = {"profile": profile, "settings": self.settings}
            protected = call_each(self.plugins, "ua_vp_protected_roots", **given)
            extra_protected = [p for _, roots in protected for p in roots]
            extra_allowed = [p for _, roots in call_each(self.plugins, "ua_vp_allowed_roots", **given) for p in roots]
            self._refuse_if_broken(profile.vp_id)  # its own plugin may just have failed
            self._policies[profile.vp_id] = guard.build_policy(
                profile, self.settings, extra_protected=extra_protected, extra_allowed=extra_allowed
            )
        return self._policies[profile.vp_id]

    def check_mission(self, mission: MissionSpec | Mission, phase: Phase, *, workspace: Any = None) -> Profile | None:
        """Resolve the profile and run every guard on ``mission``; returns the profile.

        A vp_id in ``UA_VP_REMOTE_IDS`` that no plugin here provides is accepted at dispatch
        with its envelope checked only (returns None): its worker, which has the plugin, runs
        the whole guard before execution. In a worker every mission needs its profile."""
        if phase == "dispatch" and mission.vp_id in self.remote and mission.vp_id not in self.installed:
            return None
        profile = self.profile(mission.vp_id)
        if profile.mission_types and mission.mission_type not in profile.mission_types:
            raise InvalidRequest(
                f"{profile.vp_id} does not take mission_type {mission.mission_type!r}; "
                f"it takes {', '.join(profile.mission_types)}",
                field="mission_type",
            )
        guard.check_constraints(self.policy(profile), mission.constraints, base=workspace)
        for _ in call_each(self.plugins, "ua_vp_check_mission", profile=profile, mission=mission, phase=phase):
            pass
        self._refuse_if_broken(profile.vp_id)  # its own plugin may just have failed
        return profile

    def check_runtime(self, profile: Profile) -> None:
        """At start: the runtime a profile names must exist, unless its plugin builds its own
        executor. Named after the plugin setting that chose it, when one did."""
        provider = self.pm.get_plugin(self.providers.get(profile.vp_id, ""))
        if profile.runtime in self.runtimes or hasattr(provider, "ua_vp_create_executor"):
            return
        from ua_vp.config import variable_name

        installed = ", ".join(sorted(self.runtimes))
        model = self.settings_models.get(self.providers[profile.vp_id])
        if model is not None:
            values = self.settings.plugin(model)
            for name in model.model_fields:
                if getattr(values, name) == profile.runtime:
                    variable = variable_name(model, name)
                    raise ConfigError(
                        f"invalid settings: {variable}: no installed plugin provides client runtime "
                        f"{profile.runtime!r} (installed: {installed})",
                        problems=[variable],
                    )
        raise PluginError(
            f"profile {profile.vp_id} asks for client runtime {profile.runtime!r}, which is not installed; "
            f"installed runtimes: {installed}"
        )

    def executor(self, profile: Profile) -> Executor:
        built = call_each(self.plugins, "ua_vp_create_executor", profile=profile, settings=self.settings)
        executor: Executor | None = next((found for _, found in built), None)
        self._refuse_if_broken(profile.vp_id)  # its own plugin may just have failed
        if executor is not None:
            return executor
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

    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in sorted(self.pm.list_name_plugin()):
            if plugin is None:
                continue
            dist, version = self.plugins.dists.get(name, (None, None))
            model = self.settings_models.get(name)
            infos.append(
                PluginInfo(
                    name=name,
                    dist=dist,
                    version=version,
                    hooks=tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])),
                    profiles=tuple(sorted(v for v, p in self.providers.items() if p == name)),
                    runtimes=tuple(sorted(r for r, p in self.runtime_providers.items() if p == name)),
                    settings_model=f"{model.__module__}.{model.__qualname__}" if model else None,
                )
            )
        return infos

    def effective_settings(self, vp_id: str) -> dict[str, Any]:
        """``{VARIABLE: value}`` of the settings model of the plugin providing ``vp_id``, secrets masked."""
        from ua_vp.config import variable_name

        model = self.settings_models.get(self.providers.get(vp_id, ""))
        if model is None:
            return {}
        # JSON mode shows a SecretStr as asterisks: secrets never reach the output.
        values = self.settings.plugin(model).model_dump(mode="json")
        return {variable_name(model, name): values[name] for name in model.model_fields}


def _collect(
    plugins: Plugins, hook_name: str, what: str, settings_kw: dict[str, Any], unpack: Callable[[Any], Iterable[Any]]
) -> tuple[dict[str, Any], dict[str, str]]:
    found: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for plugin_name, result in call_each(plugins, hook_name, **settings_kw):
        for key, value in unpack(result):
            if key in found:
                raise PluginError(
                    f"{what} {key!r} is provided by two plugins: {owner[key]!r} and {plugin_name!r}; "
                    "uninstall one of them",
                    key=key,
                    plugins=[owner[key], plugin_name],
                )
            found[key] = value
            owner[key] = plugin_name
    return found, owner


def load_registry(
    settings: Settings, *, extra_plugins: Iterable[Any] = (), load_entrypoints: bool = True, validate: bool = True
) -> Registry:
    """Build the registry. Every plugin's own settings are validated here (a bad value is a
    :class:`ConfigError` naming its variable); with ``validate`` (start-up) every enabled
    profile's guard policy must be sound, and an enabled id nothing provides is warned about."""
    plugins = make_plugin_manager(
        extra_plugins=extra_plugins,
        load_entrypoints=load_entrypoints,
        only=settings.load_plugins,
        trace=settings.trace_hooks,
    )
    models: dict[str, type[Any]] = {}
    for plugin_name, model in call_each(plugins, "ua_vp_plugin_settings"):
        settings.plugin(model)
        models[plugin_name] = model
    installed, providers = _collect(
        plugins, "ua_vp_profiles", "vp_id", {"settings": settings}, lambda profiles: ((p.vp_id, p) for p in profiles)
    )
    runtimes, runtime_owner = _collect(
        plugins, "ua_vp_client_runtimes", "client runtime", {}, lambda found: found.items()
    )
    registry = Registry(
        settings=settings,
        plugins=plugins,
        installed=installed,
        providers=providers,
        runtimes=runtimes,
        runtime_providers=runtime_owner,
        settings_models=models,
    )
    if validate:
        missing = registry.enabled_but_missing
        if missing:
            log.warning(
                "enabled_id_not_installed",
                missing=missing,
                installed=sorted(installed),
                hint="dispatches to it are refused (422) until the distribution providing it is installed here",
            )
        for profile in registry.enabled.values():
            registry.check_runtime(profile)
            with contextlib.suppress(ProfileBroken):  # already warned; its dispatches get 503
                registry.policy(profile)
    return registry
