"""dry-run: no model, a deterministic plan, and a summary that says so."""

from __future__ import annotations

import asyncio

from runtime_harness import Harness, make_mission

from ua_vp.runtimes import dry_run

MISSION = {
    "objective": "Add a health check. Document it in the README.\n- keep it under 50 lines",
    "mission_type": "code",
    "constraints": {"repo_path": "/srv/app", "language": "python"},
    "budget": {"max_seconds": 600, "max_tokens": 20000},
}


def test_plan_is_byte_identical_for_the_same_mission(harness: Harness) -> None:
    executor = dry_run.create(harness.profile(), harness.settings())
    first_ws, second_ws = harness.tmp / "a", harness.tmp / "b"
    first_ws.mkdir()
    second_ws.mkdir()
    # Same content under another id and attempt: the plan depends on content only.
    m1 = make_mission(**MISSION)
    m2 = make_mission(**{**MISSION, "mission_id": "m-2", "attempt": 2})
    r1 = asyncio.run(executor.execute(m1, harness.ctx(m1, workspace=first_ws)))
    r2 = asyncio.run(executor.execute(m2, harness.ctx(m2, workspace=second_ws)))

    plan = (first_ws / "PLAN.md").read_bytes()
    assert plan == (second_ws / "PLAN.md").read_bytes()
    assert r1 == r2
    text = plan.decode()
    assert "No model ran" in text
    assert "> Add a health check. Document it in the README." in text
    assert "Do: keep it under 50 lines" in text
    assert '"repo_path": "/srv/app"' in text
    assert "- max_tokens: 20000" in text


def test_result_says_plainly_that_no_model_ran(harness: Harness) -> None:
    result = harness.run(dry_run.create(harness.profile(), harness.settings()), make_mission(**MISSION))

    assert result.model_ran is False
    assert result.summary.startswith("dry-run: no model ran;")
    assert result.artifacts == ["PLAN.md"]
    assert result.to_json("dry-run")["model_ran"] is False
    assert [e["kind"] for e in harness.events] == ["dry_run", "artifact_written"]
    assert harness.events[1]["sha256"] == result.data["plan_sha256"]


def test_a_different_objective_gives_a_different_plan() -> None:
    one = dry_run.render_plan(make_mission(**MISSION))
    other = dry_run.render_plan(make_mission(**{**MISSION, "objective": "Something else."}))
    assert one != other
