"""The one factory for a host's parts: settings, plugin registry, store and gateway.

The CLI, the ops API, ``ua-vp worker`` and the pytest fixtures all build them here,
so the store always carries the ``ua_vp_mission_event`` observer: the hook fires for
every committed event whichever process wrote it. Parts are built on first use, so a
command that only reads the database never imports a plugin.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ua_vp.config import Settings, load_settings

if TYPE_CHECKING:
    from ua_vp.dispatch import Gateway
    from ua_vp.missions import MissionEvent
    from ua_vp.plugins import Registry
    from ua_vp.store import MissionStore


class Host:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: Registry | None = None,
        store: MissionStore | None = None,
        extra_plugins: Iterable[Any] = (),
        auto_upgrade: bool | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._extra_plugins = tuple(extra_plugins)
        self._auto_upgrade = auto_upgrade
        if registry is not None:
            self.__dict__["registry"] = registry
        if store is not None:
            store.on_events = store.on_events or self._notify
            self.__dict__["store"] = store

    @cached_property
    def registry(self) -> Registry:
        """Every installed plugin, its settings validated; warns about enabled ids nothing provides."""
        from ua_vp.plugins import load_registry

        return load_registry(self.settings, extra_plugins=self._extra_plugins)

    @cached_property
    def store(self) -> MissionStore:
        """The mission store with the observer wired. Only the embedded SQLite upgrades itself;
        a shared database is migrated on purpose (`ua-vp db upgrade`), an unmigrated one refuses."""
        from ua_vp.store import open_store

        s = self.settings
        return open_store(
            s.sqlalchemy_url,
            lease_ttl_seconds=s.lease_ttl_seconds,
            auto_upgrade=s.is_embedded if self._auto_upgrade is None else self._auto_upgrade,
            on_events=self._notify,
        )

    @cached_property
    def gateway(self) -> Gateway:
        from ua_vp.dispatch import Gateway

        return Gateway(self.settings, self.store, self.registry)

    def _notify(self, events: list[MissionEvent]) -> None:
        self.registry.notify(events)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.engine.dispose()
