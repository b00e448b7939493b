"""A profile's own test, with the fixtures ua-vp ships (``ua_vp.testing``)."""

from __future__ import annotations

from pathlib import Path

from ua_vp.testing import RunMission


def test_the_echo_profile_completes_a_mission(run_mission: RunMission, ua_vp_settings) -> None:  # type: ignore[no-untyped-def]
    mission, events = run_mission("vp.example.echo", "remember the milk")

    assert mission.status == "completed"
    assert mission.result and mission.result["summary"] == "echoed: remember the milk"
    note = Path(ua_vp_settings.state_dir) / "workspaces" / "example" / mission.mission_id / "NOTE.md"
    assert "remember the milk" in note.read_text()
    kinds = [e.event_type for e in events]
    assert kinds[0] == "vp.mission.dispatched" and kinds[-1] == "vp.mission.completed"
    assert {"kind": "note", "message": "writing NOTE.md"} in [e.payload for e in events]
