"""pytest fixtures for profile authors; loaded automatically where ua-vp is installed.

    def test_my_profile_completes(run_mission):
        mission, events = run_mission("vp.example.echo", "say hello")
        assert mission.status == "completed"

Everything is real: a SQLite database in ``tmp_path``, the plugin manager with
every installed profile, and the same worker loop ``ua-vp worker`` runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ua_vp.config import Settings, load_settings
from ua_vp.dispatch import Gateway
from ua_vp.missions import Mission, MissionEvent
from ua_vp.plugins import Registry, load_registry
from ua_vp.store import MissionStore, open_store

RunMission = Callable[..., tuple[Mission, list[MissionEvent]]]


@pytest.fixture
def ua_vp_enabled_ids() -> list[str] | None:
    """Override to choose the enabled profiles; None enables every installed one."""
    return None


@pytest.fixture
def ua_vp_settings(tmp_path: Path, ua_vp_enabled_ids: list[str] | None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for one test: state dir and workspaces under ``tmp_path``, embedded SQLite."""
    # A developer's own .env must not leak into tests.
    monkeypatch.chdir(tmp_path)
    base = {"state_dir": tmp_path / "state", "database_url": None}
    if ua_vp_enabled_ids is None:
        installed = load_registry(load_settings(**base, enabled_ids=[]), validate=False).installed
        ua_vp_enabled_ids = sorted(installed)
    return load_settings(**base, enabled_ids=ua_vp_enabled_ids)


@pytest.fixture
def ua_vp_registry(ua_vp_settings: Settings) -> Registry:
    return load_registry(ua_vp_settings)


@pytest.fixture
def ua_vp_store(ua_vp_settings: Settings, ua_vp_registry: Registry) -> Iterator[MissionStore]:
    store = open_store(
        ua_vp_settings.sqlalchemy_url,
        lease_ttl_seconds=ua_vp_settings.lease_ttl_seconds,
        auto_upgrade=True,
        on_events=ua_vp_registry.notify,
    )
    yield store
    store.engine.dispose()


@pytest.fixture
def run_mission(ua_vp_settings: Settings, ua_vp_store: MissionStore, ua_vp_registry: Registry) -> RunMission:
    """``run_mission(vp_id, objective, **request) -> (mission, events)``: dispatch through
    the gateway (guards included), run it with the worker loop, return the final row."""
    from ua_vp.worker import Worker

    def run(vp_id: str, objective: str, **request: Any) -> tuple[Mission, list[MissionEvent]]:
        gateway = Gateway(ua_vp_settings, ua_vp_store, ua_vp_registry)
        mission = gateway.dispatch(vp_id=vp_id, objective=objective, **request).mission
        worker = Worker(
            settings=ua_vp_settings,
            store=ua_vp_store,
            registry=ua_vp_registry,
            profile=ua_vp_registry.profile(vp_id),
        )
        asyncio.run(worker.run(once=True))
        return ua_vp_store.get(mission.mission_id), ua_vp_store.events(mission.mission_id)

    return run
