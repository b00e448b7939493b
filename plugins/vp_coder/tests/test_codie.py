"""CODIE as its users meet it: found by entry point, hard-blocked off the host's roots."""

from __future__ import annotations

from pathlib import Path

import pytest

import ua_vp
from ua_vp.config import Settings
from ua_vp.errors import GuardViolation
from ua_vp.plugins import Registry
from ua_vp.testing import RunMission


@pytest.fixture
def ua_vp_enabled_ids() -> list[str]:
    return ["vp.coder.primary"]


def test_codie_is_installed_with_its_hard_block(ua_vp_registry: Registry, ua_vp_settings: Settings) -> None:
    codie = ua_vp_registry.profile("vp.coder.primary")
    assert (codie.name, codie.hard_block, codie.runtime) == ("CODIE", True, "dry-run")
    assert codie.workspace_root == ua_vp_settings.state_dir / "workspaces" / "coder"
    assert "code" in codie.mission_types


def test_codie_runs_a_coding_mission_in_its_own_workspace(run_mission: RunMission, ua_vp_settings: Settings) -> None:
    mission, events = run_mission("vp.coder.primary", "add a --verbose flag", mission_type="code")
    assert mission.status == "completed", mission.error
    workspace = ua_vp_settings.state_dir / "workspaces" / "coder" / mission.mission_id
    assert (workspace / "PLAN.md").exists()
    assert events[-1].event_type == "vp.mission.completed"


@pytest.mark.parametrize("where", ["package", "state_dir"])
def test_codie_refuses_the_hosts_own_roots_at_dispatch(
    run_mission: RunMission, ua_vp_settings: Settings, ua_vp_store: object, where: str
) -> None:
    target = Path(ua_vp.__file__).parent if where == "package" else ua_vp_settings.state_dir / "ua_vp.db"
    with pytest.raises(GuardViolation) as info:
        run_mission("vp.coder.primary", "tidy up", constraints={"repo_path": str(target)})
    assert info.value.details["rule"] == "protected_root"
    assert str(target) in info.value.message


def test_the_handoff_root_is_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ua_vp.config import load_settings
    from ua_vp.plugins import load_registry

    monkeypatch.chdir(tmp_path)
    handoff = tmp_path / "handoff"
    handoff.mkdir()
    settings = load_settings(state_dir=tmp_path / "state", handoff_root=handoff, enabled_ids=["vp.coder.primary"])
    registry = load_registry(settings)
    spec = ua_vp.MissionSpec.create(
        vp_id="vp.coder.primary", objective="ship it", constraints={"output_dir": str(handoff / "out")}
    )
    assert registry.check_mission(spec, "dispatch").vp_id == "vp.coder.primary"


def test_a_repo_path_that_is_not_a_string_is_the_guard_violation_the_hook_spec_names(
    run_mission: RunMission,
) -> None:
    with pytest.raises(GuardViolation) as info:
        run_mission("vp.coder.primary", "tidy up", constraints={"repo_path": ["not", "a", "path"]})
    assert info.value.code == "guard_violation" and info.value.details["rule"] == "repo_path_shape"
