"""ECHO's own tests, with the fixtures ua-vp ships (``ua_vp.testing``): a real SQLite
database in ``tmp_path``, the installed plugins, and the worker loop ``ua-vp worker`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ua_vp import ConfigError, Settings
from ua_vp.plugins import Registry
from ua_vp.testing import RunMission


@pytest.fixture
def ua_vp_enabled_ids() -> list[str]:
    return ["vp.example.echo"]


def test_the_profile_is_installed_with_its_own_settings(ua_vp_registry: Registry) -> None:
    profile = ua_vp_registry.profile("vp.example.echo")
    assert (profile.name, profile.runtime) == ("ECHO", "example-echo")
    assert ua_vp_registry.effective_settings("vp.example.echo")["UA_VP_EXAMPLE_RUNTIME"] == "example-echo"


def test_a_mission_completes_and_writes_its_note(run_mission: RunMission, ua_vp_settings: Settings) -> None:
    mission, events = run_mission("vp.example.echo", "remember the milk")

    assert mission.status == "completed", mission.error
    assert mission.result and mission.result["summary"] == "echoed: remember the milk"
    note = ua_vp_settings.state_dir / "workspaces" / "example" / mission.mission_id / "NOTE.md"
    assert "remember the milk" in note.read_text()
    kinds = [e.event_type for e in events]
    assert kinds[0] == "vp.mission.dispatched" and kinds[-1] == "vp.mission.completed"
    assert {"kind": "note", "message": "writing NOTE.md"} in [e.payload for e in events]


def test_a_runtime_nobody_provides_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ua_vp.config import load_settings
    from ua_vp.plugins import load_registry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UA_VP_EXAMPLE_RUNTIME", "no-such-runtime")
    with pytest.raises(ConfigError, match="UA_VP_EXAMPLE_RUNTIME"):
        load_registry(load_settings(state_dir=tmp_path, enabled_ids=["vp.example.echo"]))
