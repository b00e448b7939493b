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
from ua_vp.host import Host
from ua_vp.missions import Mission, MissionEvent
from ua_vp.plugins import Registry
from ua_vp.store import MissionStore

RunMission = Callable[..., tuple[Mission, list[MissionEvent]]]


@pytest.fixture
def ua_vp_enabled_ids() -> list[str] | None:
    """Override to choose the enabled profiles; None enables every installed one."""
    return None


@pytest.fixture
def ua_vp_settings(tmp_path: Path, ua_vp_enabled_ids: list[str] | None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for one test: state dir and workspaces under ``tmp_path``, embedded SQLite.
    Your plugin's own settings are read from the environment: set them with ``monkeypatch.setenv``
    before this fixture runs, or read them with ``ua_vp_settings.plugin(YourSettings, **overrides)``
    before anything else does."""
    # A developer's own .env must not leak into tests.
    monkeypatch.chdir(tmp_path)
    return load_settings(state_dir=tmp_path / "state", database_url=None, enabled_ids=ua_vp_enabled_ids)


@pytest.fixture
def ua_vp_host(ua_vp_settings: Settings) -> Iterator[Host]:
    """The host's parts as ``ua-vp`` builds them: registry, store (observer wired), gateway."""
    host = Host(ua_vp_settings)
    yield host
    host.close()


@pytest.fixture
def ua_vp_registry(ua_vp_host: Host) -> Registry:
    return ua_vp_host.registry


@pytest.fixture
def ua_vp_store(ua_vp_host: Host) -> MissionStore:
    return ua_vp_host.store


@pytest.fixture
def run_mission(ua_vp_host: Host) -> RunMission:
    """``run_mission(vp_id, objective, **request) -> (mission, events)``: dispatch through
    the gateway (guards included), run it with the worker loop, return the final row."""
    from ua_vp.worker import Worker

    def run(vp_id: str, objective: str, **request: Any) -> tuple[Mission, list[MissionEvent]]:
        mission = ua_vp_host.gateway.dispatch(vp_id=vp_id, objective=objective, **request).mission
        worker = Worker(
            settings=ua_vp_host.settings,
            store=ua_vp_host.store,
            registry=ua_vp_host.registry,
            profile=ua_vp_host.registry.profile(vp_id),
        )
        asyncio.run(worker.run(once=True))
        return ua_vp_host.store.get(mission.mission_id), ua_vp_host.store.events(mission.mission_id)

    return run
