"""GENERALIST: found by entry point, writes its artifacts into the mission workspace."""

from __future__ import annotations

import pytest

from ua_vp.config import Settings
from ua_vp.errors import GuardViolation
from ua_vp.plugins import Registry
from ua_vp.testing import RunMission


@pytest.fixture
def ua_vp_enabled_ids() -> list[str]:
    return ["vp.general.primary"]


def test_generalist_is_installed(ua_vp_registry: Registry) -> None:
    profile = ua_vp_registry.profile("vp.general.primary")
    assert (profile.name, profile.hard_block) == ("GENERALIST", False)
    assert set(profile.mission_types) >= {"task", "research", "writing", "planning"}


def test_the_seed_mission_completes_offline_and_says_no_model_ran(
    run_mission: RunMission, ua_vp_settings: Settings
) -> None:
    mission, events = run_mission("vp.general.primary", "Create a concise execution checklist.")
    assert mission.status == "completed"
    assert mission.result and mission.result["model_ran"] is False
    assert mission.result["summary"].startswith("dry-run: no model ran")
    plan = ua_vp_settings.state_dir / "workspaces" / "general" / mission.mission_id / "PLAN.md"
    assert "Create a concise execution checklist." in plan.read_text()
    assert [e.event_type for e in events][:2] == ["vp.mission.dispatched", "vp.mission.started"]


def test_paths_outside_its_workspace_are_refused(run_mission: RunMission) -> None:
    with pytest.raises(GuardViolation) as info:
        run_mission("vp.general.primary", "summarise", constraints={"sources": ["../../../etc/passwd"]})
    assert info.value.details["rule"] == "outside_allowed_roots"
